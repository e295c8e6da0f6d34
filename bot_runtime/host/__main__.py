"""``python -m bot_runtime.host``: a host agent configured from the environment alone (no control-plane settings).

``botfactory runtime-host`` is the usual entry; this one suits a runtime-only machine. See HostConfig.from_env.
"""

from __future__ import annotations

import sys

from bot_runtime.host.agent import HostConfig, run_host

if __name__ == "__main__":
    sys.exit(run_host(HostConfig.from_env()))
