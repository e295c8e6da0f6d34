"""Jobs are queued only after the transaction commits, and async job bodies run under a real RQ worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import select

from control_plane.jobs.queue import enqueue_after_commit, get_queue, run_async, sync_redis
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import key
from control_plane.models import Tenant

ROOT = Path(__file__).resolve().parents[3]


@run_async
async def mark_tenant_seen(tenant_id: str) -> str:
    """A real job body: reads the committed row and writes a marker."""
    async with get_sessionmaker()() as db:
        tenant = await db.scalar(select(Tenant).where(Tenant.id == uuid.UUID(tenant_id)))
    assert tenant is not None, "the job ran before its row was committed"
    sync_redis().set(key("test-job", tenant_id), tenant.name)
    return tenant.name


def drain() -> None:
    """Run the real ``botfactory worker --burst`` (forking worker) until the queues are empty."""
    subprocess.run([sys.executable, "-m", "control_plane.cli", "worker", "--burst"], cwd=ROOT, check=True, timeout=60)


async def test_enqueued_after_commit_runs_with_committed_data() -> None:
    async with get_sessionmaker()() as db:
        tenant = Tenant(name="Acme")
        db.add(tenant)
        await db.flush()
        enqueue_after_commit(db, mark_tenant_seen, str(tenant.id))
        assert get_queue().count == 0  # nothing before the commit
        await db.commit()
    assert get_queue().count == 1
    await asyncio.to_thread(drain)
    assert sync_redis().get(key("test-job", str(tenant.id))) == b"Acme"


async def test_rollback_queues_nothing() -> None:
    get_queue().empty()
    async with get_sessionmaker()() as db:
        tenant = Tenant(name="Gone")
        db.add(tenant)
        await db.flush()
        enqueue_after_commit(db, mark_tenant_seen, str(tenant.id))
        await db.rollback()
    assert get_queue().count == 0


async def test_only_the_outer_transaction_decides() -> None:
    """A released savepoint queues nothing yet, a rolled-back one drops only its own job, and a session that rolled
    back and commits later does not queue what the rollback undid."""
    get_queue().empty()
    try:
        async with get_sessionmaker()() as db:
            await db.execute(select(1))
            enqueue_after_commit(db, mark_tenant_seen, "dropped-by-rollback")
            await db.rollback()
            enqueue_after_commit(db, mark_tenant_seen, "outer")
            async with db.begin_nested():
                enqueue_after_commit(db, mark_tenant_seen, "released-savepoint")
            assert get_queue().count == 0  # released, but not committed
            try:
                async with db.begin_nested():
                    enqueue_after_commit(db, mark_tenant_seen, "rolled-back-savepoint")
                    raise LookupError
            except LookupError:
                pass
            await db.commit()
        assert sorted(job.args[0] for job in get_queue().jobs) == ["outer", "released-savepoint"]
    finally:
        get_queue().empty()
