"""``botfactory worker`` (RQ worker with delayed-job scheduler) and ``botfactory scheduler`` (periodic jobs)."""

from __future__ import annotations

import argparse
import importlib
import logging


def cmd_worker(args: argparse.Namespace) -> int:
    from rq import Worker

    from control_plane.jobs.queue import QUEUES, get_queue, sync_redis
    from control_plane.kit.logging import configure_logging
    from control_plane.settings import get_settings

    configure_logging(get_settings().log_level)
    from control_plane.jobs.model_check import start_in_background

    start_in_background()  # GOOGLE_API_KEY set: are the configured Gemini model ids still served?
    queues = [get_queue(name) for name in (args.queues or QUEUES)]
    worker = Worker(queues, connection=sync_redis())
    worker.work(with_scheduler=True, burst=args.burst, logging_level="WARNING")
    return 0


def _resolve(path: str) -> object:
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from rq.cron import CronScheduler

    from control_plane.jobs.queue import queue_name, sync_redis
    from control_plane.jobs.schedule import PERIODIC
    from control_plane.kit.logging import configure_logging
    from control_plane.settings import get_settings

    configure_logging(get_settings().log_level)
    scheduler = CronScheduler(connection=sync_redis(), logging_level=logging.WARNING)
    for path, interval in PERIODIC:
        scheduler.register(_resolve(path), queue_name("default"), interval=interval)  # type: ignore[arg-type]
    scheduler.start()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = sub.add_parser("worker", help="run background jobs (ingestion, reminders, broadcasts)")
    worker.add_argument("--queues", nargs="*", help="queue names (default: all)")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.set_defaults(func=cmd_worker)
    scheduler = sub.add_parser("scheduler", help="queue periodic jobs (reminders, scheduled broadcasts, re-syncs)")
    scheduler.set_defaults(func=cmd_scheduler)
