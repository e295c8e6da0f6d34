"""Rules of the runtimes console: rows for display, operator commands with a translated outcome, log tails, hosts.

Runtime state is read only from Redis, through ``control_plane.runtimes.operations`` (the CLI uses the same
functions), so the console shows what the host agents report and works while PostgreSQL is busy; the database
gives tenant names and keeps the audit trail of commands.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from babel.dates import format_timedelta
from babel.numbers import format_decimal
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from admin_console.runtimes import repository
from admin_console.runtimes.schemas import HostOut, LogStream, RuntimeCommandOut, RuntimeLogsOut, RuntimeOut
from bot_runtime.i18n import N_, gettext
from control_plane.kit.errors import AppError, NotFound
from control_plane.kit.i18n import babel_locale
from control_plane.runtimes import operations
from control_plane.runtimes.operations import RuntimeRow
from control_plane.settings import get_settings

log = logging.getLogger("admin_console.runtimes")

# The host agent's rule for tenant ids (bot_runtime/host/agent.py): anything else was never a runtime.
TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COMMANDS = operations.COMMANDS
MIB = 1024 * 1024
# Hosts write stats every few seconds; an "active" row silent this long belongs to a host that is gone.
STALE_AFTER_SECONDS = 60.0
ACTIVE_STATES = frozenset({"starting", "running", "stopping", "crash-looping"})
COMMAND_WAIT_SECONDS = 4.0
LOG_WAIT_SECONDS = 2.0

# Filter order on the page: trouble first. "pending" is desired but not yet taken by any host (operations.py).
STATE_LABELS: dict[str, str] = {
    "crash-looping": N_("Crash-looping"),
    "exited": N_("Exited"),
    "running": N_("Running"),
    "starting": N_("Starting"),
    "stopping": N_("Stopping"),
    "idle": N_("Idle"),
    "stopped": N_("Stopped"),
    "pending": N_("Waiting for a host"),
}

OUTCOMES: dict[tuple[str, bool], str] = {
    ("start", True): N_("The runtime is starting."),
    ("start", False): N_("The runtime could not be started."),
    ("stop", True): N_("The runtime is stopping. It stays stopped until someone starts it."),
    ("stop", False): N_("The stop was recorded, but the host did not confirm it."),
    ("restart", True): N_("The runtime is restarting."),
    ("restart", False): N_("The runtime could not be restarted."),
}


class RuntimeNotFound(NotFound):
    message = N_("No runtime is known for this tenant.")


class NoLogsYet(NotFound):
    message = N_("This runtime has not run on any host yet, so it has no logs.")


class HostDidNotAnswer(AppError):
    status_code = 504
    code = "host_timeout"
    message = N_("No runtime host answered in time. The host may be down; try again in a moment.")


# Display helpers (also used by the templates) ------------------------------------------------------------------


def state_label(state: str) -> str:
    return gettext(STATE_LABELS[state]) if state in STATE_LABELS else state


def format_uptime(seconds: float) -> str:
    """``"5 minutes"``, ``"2 days"`` … in the request's language."""
    return format_timedelta(timedelta(seconds=seconds), locale=babel_locale())


def format_age(moment: datetime | None) -> str:
    """``"3 seconds ago"`` in the request's language."""
    if moment is None:
        return ""
    return format_timedelta(moment - datetime.now(UTC), add_direction=True, locale=babel_locale())


def format_memory(rss_bytes: int) -> str:
    size = format_decimal(rss_bytes / MIB, format="#,##0.0", locale=babel_locale())
    return gettext("%(size)s MiB", size=size)


# Reads ---------------------------------------------------------------------------------------------------------


def _moment(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None


def to_out(row: RuntimeRow, tenant_name: str | None, now: float) -> RuntimeOut:
    stale = row.state in ACTIVE_STATES and row.updated_at > 0 and now - row.updated_at > STALE_AFTER_SECONDS
    uptime = row.uptime
    if row.state in ("starting", "running") and row.updated_at > 0 and not stale:
        # The host reported the uptime at updated_at; the page should not lag it by a stats interval.
        uptime += max(0.0, now - row.updated_at)
    return RuntimeOut(
        tenant_id=row.tenant_id,
        tenant_name=tenant_name,
        host=row.host or None,
        state=row.state,
        pid=row.pid or None,
        uptime_seconds=round(uptime, 1),
        restarts=row.restarts,
        rss_bytes=row.rss,
        last_error=row.last_error,
        reason=row.reason,
        desired=row.desired,
        held=row.held,
        idle=row.idle,
        leased_by=row.leased_by or None,
        stale=stale,
        next_retry_at=_moment(row.next_retry_at) if row.state == "crash-looping" else None,
        updated_at=_moment(row.updated_at),
    )


def _sort_key(item: RuntimeOut) -> tuple[bool, str, str]:
    return item.tenant_name is None, (item.tenant_name or "").casefold(), item.tenant_id


async def list_runtimes(redis: Redis, db: AsyncSession) -> list[RuntimeOut]:
    """Every runtime the hosts know of or that should run, by tenant name (unnamed ids last)."""
    rows = await operations.list_runtimes(redis)
    names = await repository.tenant_names(db, [row.tenant_id for row in rows])
    now = time.time()
    return sorted((to_out(row, names.get(row.tenant_id), now) for row in rows), key=_sort_key)


async def known_runtime(redis: Redis, tenant_id: str) -> RuntimeRow:
    """The runtime's row, or RuntimeNotFound: commands never create markers for ids that were never runtimes."""
    row = await operations.get_runtime(redis, tenant_id) if TENANT_ID.match(tenant_id) else None
    if row is None:
        raise RuntimeNotFound()
    return row


async def get_runtime(redis: Redis, db: AsyncSession, tenant_id: str) -> RuntimeOut:
    row = await known_runtime(redis, tenant_id)
    names = await repository.tenant_names(db, [tenant_id])
    return to_out(row, names.get(tenant_id), time.time())


def _wait_seconds(preferred: float) -> float:
    # The shared client's socket timeout also bounds a blocking read (BLPOP): wait a little less than it.
    return max(0.5, min(preferred, get_settings().redis_socket_timeout_seconds - 1.0))


async def log_tail(redis: Redis, tenant_id: str, *, lines: int, stream: LogStream) -> RuntimeLogsOut:
    """The last lines of the runtime's log, asked of the host that runs it (or last ran it) over Redis."""
    row = await known_runtime(redis, tenant_id)
    if not row.leased_by and not row.host:
        raise NoLogsYet()
    reply = await operations.log_tail(
        redis, tenant_id, lines=lines, stream=stream, wait_seconds=_wait_seconds(LOG_WAIT_SECONDS)
    )
    if reply is None:
        raise HostDidNotAnswer()
    return RuntimeLogsOut(tenant_id=tenant_id, host=reply.host_id, stream=stream, lines=reply.lines, error=reply.error)


async def list_hosts(redis: Redis, runtimes: Iterable[RuntimeRow | RuntimeOut] | None = None) -> list[HostOut]:
    """Live hosts with their heartbeat and the states of the runtimes they hold leases of."""
    hosts = await operations.list_hosts(redis)
    if runtimes is None:
        runtimes = await operations.list_runtimes(redis) if hosts else []
    states: dict[str, Counter[str]] = {}
    for runtime in runtimes:
        if runtime.leased_by:
            states.setdefault(runtime.leased_by, Counter())[runtime.state] += 1
    now = time.time()
    return [
        HostOut(
            host_id=host.host_id,
            pid=host.pid,
            supervisord_pid=host.supervisord_pid,
            started_at=_moment(host.started_at),
            heartbeat_at=_moment(host.updated_at),
            heartbeat_age_seconds=round(max(0.0, now - host.updated_at), 1) if host.updated_at else 0.0,
            runtimes=host.runtimes,
            states=dict(states.get(host.host_id, {})),
        )
        for host in hosts
    ]


# Commands ------------------------------------------------------------------------------------------------------


async def run_command(
    redis: Redis,
    db: AsyncSession,
    tenant_id: str,
    command: str,
    *,
    actor_user_id: uuid.UUID | None,
    ip: str,
) -> RuntimeCommandOut:
    """Start, stop or restart through the leasing host (operations.py), audit it, and word the outcome.

    Stop holds the tenant first, so it takes effect even when the host does not answer; start clears the hold and
    wakes the tenant when nobody leases it.
    """
    if command not in COMMANDS:
        raise NotFound()
    await known_runtime(redis, tenant_id)
    operation = operations.OPERATIONS[command]
    ok, detail = await operation(redis, tenant_id, wait_seconds=_wait_seconds(COMMAND_WAIT_SECONDS))
    log.info(
        "admin.runtime.command",
        extra={"tenant_id": tenant_id, "command": command, "ok": ok, "detail": detail},
    )
    repository.add_audit(
        db,
        tenant_id=await repository.existing_tenant(db, tenant_id),
        actor_user_id=actor_user_id,
        action=f"runtime.{command}",
        runtime=tenant_id,
        data={"ok": ok, "detail": detail[:500]},
        ip=ip,
    )
    return RuntimeCommandOut(ok=ok, message=gettext(OUTCOMES[(command, ok)]), detail=detail)


def outcome_message(command: str, ok: bool, detail: str) -> str:
    """The flash text after a console form: the translated outcome, then the host's own words."""
    text = gettext(OUTCOMES[(command, ok)])
    if not detail:
        return text
    return text + " " + gettext("Host reply: %(detail)s", detail=detail)
