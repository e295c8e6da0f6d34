"""RQ queues under the configured key prefix, and enqueueing that waits for the database commit.

Jobs carry ids, never ORM objects, and are queued only after the transaction that created their rows commits:
a job can never start before its data exists, and a rolled-back request queues nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, ParamSpec

from redis import Redis
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from control_plane.settings import get_settings

P = ParamSpec("P")
log = logging.getLogger("botfactory.jobs")

QUEUES = ("default", "ingestion", "broadcasts")


@lru_cache(maxsize=1)
def sync_redis() -> Redis:
    """RQ speaks synchronous redis-py; one connection pool per process."""
    return Redis.from_url(get_settings().redis_url)


def queue_name(name: str) -> str:
    return f"{get_settings().redis_key_prefix}{name}"


def get_queue(name: str = "default") -> Queue:
    return Queue(queue_name(name), connection=sync_redis())


def enqueue_now(
    func: Callable[..., Any], *args: Any, queue: str = "default", job_id: str | None = None, retries: int = 2
) -> str:
    """Queue immediately (for callers outside a database transaction). Returns the job id."""
    job = get_queue(queue).enqueue(
        func,
        *args,
        job_id=job_id,
        retry=Retry(max=retries, interval=[10, 60]) if retries else None,
        job_timeout=get_settings().job_timeout_seconds,
        failure_ttl=7 * 24 * 3600,
    )
    return job.id


def enqueue_after_commit(
    db: AsyncSession, func: Callable[..., Any], *args: Any, queue: str = "default", job_id: str | None = None
) -> None:
    """Queue ``func(*args)`` once ``db`` commits; nothing is queued if it rolls back.

    Only the outermost transaction counts (SQLAlchemy fires its commit and rollback events for savepoints too): a
    released savepoint (``begin_nested``) queues nothing yet, and a rolled-back one drops only the jobs asked for
    inside it.
    """
    sync = db.sync_session
    sync.info.setdefault(_PENDING, []).append((sync.get_nested_transaction(), func, args, queue, job_id))
    if not sync.info.get(_HOOKED):
        sync.info[_HOOKED] = True
        event.listen(sync, "after_commit", _enqueue_pending)
        event.listen(sync, "after_rollback", _drop_pending)


_PENDING = "jobs_after_commit"
_HOOKED = "jobs_after_commit_hooked"


def _enqueue_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the outer transaction can still roll back
    for _savepoint, func, args, queue, job_id in session.info.pop(_PENDING, []):
        try:
            enqueue_now(func, *args, queue=queue, job_id=job_id)
        except Exception:  # the commit already happened; the periodic sweeper re-queues stuck work
            log.exception("jobs.enqueue.failed", extra={"job": getattr(func, "__name__", str(func))})


def _drop_pending(session: Session) -> None:
    rolled_back = session.get_nested_transaction()  # None: the whole transaction
    pending = session.info.pop(_PENDING, [])
    if rolled_back is not None:
        session.info[_PENDING] = [job for job in pending if not _inside(job[0], rolled_back)]


def _inside(transaction: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


def run_async(func: Callable[P, Awaitable[Any]]) -> Callable[P, Any]:
    """Wrap an async job body so RQ (synchronous) can run it; pools are closed when the job ends."""

    def runner(*args: P.args, **kwargs: P.kwargs) -> Any:
        async def main() -> Any:
            from control_plane.kit.db import dispose_engine
            from control_plane.kit.redis import close_redis

            try:
                return await func(*args, **kwargs)
            finally:
                await dispose_engine()
                await close_redis()

        return asyncio.run(main())

    runner.__name__ = func.__name__
    runner.__qualname__ = func.__qualname__
    runner.__module__ = func.__module__
    runner.__doc__ = func.__doc__
    return runner
