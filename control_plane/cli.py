"""The ``botfactory`` command: serve, db upgrade, create-admin, and each feature's commands (EXTENSIONS).

Features add theirs in one place (worker, scheduler, events-consume, runtime-host, runtimes ...). Heavy imports
happen inside each command, so ``botfactory --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "control_plane.app:app",
        host=args.host,
        port=args.port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        workers=args.workers,
        log_level="warning",
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from alembic.config import Config

    from alembic import command

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    command.upgrade(config, args.revision)
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from control_plane.accounts.admin import make_platform_admin

    found = asyncio.run(make_platform_admin(args.email))
    if not found:
        print(f"No user with email {args.email}: register first, then run this again.", file=sys.stderr)
        return 1
    print(f"{args.email} is now a platform admin.")
    return 0


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("serve", help="run the web app and API")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=1)
    parser.set_defaults(func=cmd_serve)


def _db_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("db", help="database migrations")
    db_sub = parser.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)


def _admin_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("create-admin", help="mark a registered user as platform admin")
    parser.add_argument("email")
    parser.set_defaults(func=cmd_create_admin)


# Modules that add subcommands: each exposes ``register(subparsers)``.
EXTENSIONS = (
    "control_plane.jobs.cli",
    "control_plane.events.cli",
    "control_plane.runtimes.cli",
)
BUILTIN: tuple[Callable[[argparse._SubParsersAction], None], ...] = (  # type: ignore[type-arg]
    _serve_parser,
    _db_parser,
    _admin_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botfactory", description="BotFactory control plane and workers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in BUILTIN:
        add(sub)
    for module_name in EXTENSIONS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
