"""``botfactory events-consume``: store the runtimes' events (messages, chat users, deliveries) in PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio


def cmd_events_consume(args: argparse.Namespace) -> int:
    from control_plane.events.consumer import ConsumerSettings, serve
    from control_plane.kit.logging import configure_logging
    from control_plane.settings import get_settings

    configure_logging(get_settings().log_level)
    settings = ConsumerSettings()
    if args.batch_size:
        settings.batch_size = args.batch_size
    return asyncio.run(serve(settings))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "events-consume", help="ingest the runtimes' events stream into PostgreSQL (runs until SIGTERM)"
    )
    parser.add_argument("--batch-size", type=int, default=0, help="entries per transaction (default EVENTS_BATCH_SIZE)")
    parser.set_defaults(func=cmd_events_consume)
