"""``python -m bot_runtime --tenant ID``: run one tenant's runtime until it is stopped, idle, or loses its lease.

Environment (set by the host agent; nothing else is read): REDIS_URL, REDIS_KEY_PREFIX, RUNTIME_SECRET_KEY,
RUNTIME_HOST_ID, RUNTIME_LEASE_TOKEN, RUNTIME_LEASE_TTL, RUNTIME_IDLE_SECONDS, LOG_LEVEL, the external base URLs
(TELEGRAM_API_BASE_URL, ...), tuning knobs (RUNTIME_CONFIG_POLL_SECONDS, RUNTIME_CLAIM_IDLE_MS,
RUNTIME_CONCURRENCY, RUNTIME_PLUGINS) and one fault-injection switch:

    BOTFACTORY_RUNTIME_CRASH_AFTER=N   exit with status 1 (like a crash, no cleanup) N seconds after start.
                                       Used by the crash-loop test; never set it in production.

Exit status: contract.EXIT_IDLE (0) after RUNTIME_IDLE_SECONDS without traffic or on SIGTERM,
EXIT_LEASE_LOST when another host owns the tenant now, EXIT_ORPHANED when supervisord died, EXIT_FATAL otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys

from bot_runtime import contract
from bot_runtime.runtime import Runtime, RuntimeSettings, configure_logging

TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot_runtime", description="Run one tenant's bot runtime.")
    parser.add_argument("--tenant", default=os.environ.get("TENANT", ""), help="tenant id (default: $TENANT)")
    args = parser.parse_args(argv)
    if not TENANT_ID.match(args.tenant):
        parser.error("--tenant must be a tenant id (letters, digits, '-' and '_')")
    settings = RuntimeSettings.from_env(args.tenant)
    configure_logging(settings.tenant_id, settings.host_id, os.environ.get("LOG_LEVEL", "INFO"))
    try:
        return asyncio.run(Runtime(settings).run())
    except KeyboardInterrupt:
        return contract.EXIT_IDLE


if __name__ == "__main__":
    sys.exit(main())
