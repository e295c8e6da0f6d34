"""CLI: ``botfactory runtime-host`` (the host agent) and ``botfactory runtimes list|start|stop|restart|logs|sync``.

Heavy imports happen inside the commands so ``botfactory --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _runtime_env_from_settings(env: dict[str, str]) -> dict[str, str]:
    """Fill the agent's environment from settings (which may come from ``.env``) without overriding real env vars."""
    from control_plane.settings import get_settings

    settings = get_settings()
    defaults = {
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "RUNTIME_SECRET_KEY": settings.runtime_secret_key,
        "RUNTIME_LEASE_TTL": str(settings.runtime_lease_ttl_seconds),
        "RUNTIME_IDLE_SECONDS": str(settings.runtime_idle_seconds),
        "LOG_LEVEL": settings.log_level,
        "ENVIRONMENT": settings.environment,
        "DOMAIN_URL": settings.domain_url,
        "TELEGRAM_API_BASE_URL": settings.telegram_api_base_url,
        "TELEGRAM_MODE": settings.telegram_mode,
        "GRAPH_API_BASE_URL": settings.graph_api_base_url,
        "GEMINI_API_BASE_URL": settings.gemini_api_base_url,
        "OPENAI_COMPAT_BASE_URL": settings.openai_compat_base_url,
    }
    for key, value in defaults.items():
        if value and not env.get(key):
            env[key] = value
    return env


def cmd_runtime_host(args: argparse.Namespace) -> int:
    from bot_runtime.host.agent import HostConfig, run_host

    env = _runtime_env_from_settings(dict(os.environ))
    if args.host_id:
        env["RUNTIME_HOST_ID"] = args.host_id
    if args.state_dir:
        env["RUNTIME_HOST_DIR"] = args.state_dir
    if args.inet_port:
        env["RUNTIME_HOST_INET_PORT"] = str(args.inet_port)
    if not env.get("REDIS_URL"):
        print("REDIS_URL is not set (make run sets it to the embedded Valkey).", file=sys.stderr)
        return 2
    # contract.prefix() reads the process environment.
    os.environ["REDIS_KEY_PREFIX"] = env["REDIS_KEY_PREFIX"]
    return run_host(HostConfig.from_env(env, default_root=ROOT))


def _run(coro_factory: Callable[[Any], Awaitable[int]]) -> int:
    """Run one async command with a private Redis client (decoded strings)."""
    from redis.asyncio import Redis

    from control_plane.runtimes.publish import sync_key_prefix
    from control_plane.settings import get_settings

    sync_key_prefix()

    async def main() -> int:
        redis = Redis.from_url(get_settings().redis_url, decode_responses=True, socket_timeout=15)
        try:
            return await coro_factory(redis)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _human_bytes(value: int) -> str:
    return f"{value / 1048576:.1f}M" if value else "-"


def _human_seconds(value: float) -> str:
    if not value:
        return "-"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def cmd_list(args: argparse.Namespace) -> int:
    from control_plane.runtimes.operations import list_runtimes

    async def run(redis: Any) -> int:
        rows = await list_runtimes(redis)
        if args.json:
            print(json.dumps([row.as_dict() for row in rows], indent=2))
            return 0
        header = (
            f"{'TENANT':<36}  {'STATE':<13} {'HOST':<16} {'PID':>7} {'UPTIME':>8} {'RESTARTS':>8} {'RSS':>7}  ERROR"
        )
        print(header)
        for row in rows:
            stale = " (stale)" if row.updated_at and time.time() - row.updated_at > 60 else ""
            print(
                f"{row.tenant_id:<36}  {row.state + stale:<13} {row.host or '-':<16} {row.pid or '-':>7} "
                f"{_human_seconds(row.uptime):>8} {row.restarts:>8} {_human_bytes(row.rss):>7}  {row.last_error[:60]}"
            )
        return 0

    return _run(run)


def _cmd_operation(name: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from control_plane.runtimes import operations

        operation = operations.OPERATIONS[name]

        async def run(redis: Any) -> int:
            ok, message = await operation(redis, args.tenant, wait_seconds=args.timeout)
            print(f"{name} {args.tenant}: {'ok' if ok else 'failed'}: {message}")
            return 0 if ok else 1

        return _run(run)

    return command


def cmd_logs(args: argparse.Namespace) -> int:
    from control_plane.runtimes.operations import log_tail

    async def run(redis: Any) -> int:
        stream = "stdout" if args.stdout else "stderr"
        reply = await log_tail(redis, args.tenant, lines=args.lines, stream=stream, wait_seconds=args.timeout)
        if reply is None:
            print("No host answered (the tenant never ran, or its host is down).", file=sys.stderr)
            return 1
        if reply.error:
            print(f"host {reply.host_id}: {reply.error}", file=sys.stderr)
        for line in reply.lines:
            print(line)
        return 0 if not reply.error else 1

    return _run(run)


def cmd_sync(args: argparse.Namespace) -> int:
    from control_plane.kit.db import dispose_engine, get_sessionmaker
    from control_plane.kit.redis import close_redis
    from control_plane.runtimes.publish import sync_all

    async def run() -> dict[str, int]:
        try:
            async with get_sessionmaker()() as db:
                return await sync_all(db)
        finally:
            await close_redis()
            await dispose_engine()

    result = asyncio.run(run())
    print(
        f"Published {result['published']} of {result['tenants']} tenants; {result['desired']} should run; "
        f"removed {result['removed']} stale desired entries."
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    host = sub.add_parser("runtime-host", help="run a runtime host agent (its own supervisord, tenants by lease)")
    host.add_argument("--host-id", default="", help="host id (default: $RUNTIME_HOST_ID or the hostname)")
    host.add_argument("--state-dir", default="", help="default: $RUNTIME_HOST_DIR or .data/runtime-host/<host_id>")
    host.add_argument("--inet-port", type=int, default=0, help="also serve supervisord's XML-RPC on 127.0.0.1:PORT")
    host.set_defaults(func=cmd_runtime_host)

    runtimes = sub.add_parser("runtimes", help="list and control tenant runtimes")
    runtimes_sub = runtimes.add_subparsers(dest="runtimes_command", required=True)
    listing = runtimes_sub.add_parser("list", help="every runtime: state, host, uptime, restarts, memory, error")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    for name, text in (
        ("start", "start a tenant's runtime (clears an operator stop, resets crash-loop backoff)"),
        ("stop", "stop a tenant's runtime and keep it stopped until start"),
        ("restart", "restart a tenant's runtime where it runs"),
    ):
        parser = runtimes_sub.add_parser(name, help=text)
        parser.add_argument("tenant")
        parser.add_argument("--timeout", type=float, default=5.0)
        parser.set_defaults(func=_cmd_operation(name))
    logs = runtimes_sub.add_parser("logs", help="the last log lines of a tenant's runtime")
    logs.add_argument("tenant")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("--stdout", action="store_true", help="stdout instead of the structured stderr log")
    logs.add_argument("--timeout", type=float, default=3.0)
    logs.set_defaults(func=cmd_logs)
    sync = runtimes_sub.add_parser("sync", help="republish every tenant's config from PostgreSQL")
    sync.set_defaults(func=cmd_sync)
