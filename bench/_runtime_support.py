"""Helpers for bench/runtime_bench.py: the baseline echo bot, /proc readers and percentiles.

Module-level imports are stdlib only, on purpose: the echo bot runs as ``python bench/_runtime_support.py echo ...``
and its RSS is the baseline, so this file must not load anything a bare python-telegram-bot echo bot would not.

The echo bot is the smallest honest ptb program: one ``Application`` polling the Bot API at ``--api-base`` with
``run_polling`` and one ``MessageHandler`` that replies with the message's text.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------------------
# /proc


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (0 when it is gone)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages divided among their users) in bytes; 0 when unreadable."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/<pid>/stat); 0 when it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


def alive(pid: int) -> bool:
    """True unless ``pid`` is gone or a zombie."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def extension_packages(pid: int) -> list[str]:
    """Top-level site-packages names with a shared object mapped into ``pid`` (e.g. ``pydantic_core`` would
    betray an SDK such as google-genai), sorted."""
    names: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            _, sep, rest = line.partition("site-packages/")
            if sep:
                names.add(rest.split("/", 1)[0].split(".", 1)[0])
    return sorted(names)


def pids_with_argv(*needles: str) -> list[int]:
    """Pids whose argv contains every ``needle`` as one argument (the bench's own leftovers only)."""
    found = []
    wanted = [needle.encode() for needle in needles]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if all(needle in argv for needle in wanted) and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


# ---------------------------------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def mib(value: float) -> float:
    return value / MIB


def total(values: Iterable[float]) -> float:
    return float(sum(values))


# ---------------------------------------------------------------------------------------------------------------------
# The baseline echo bot


def run_echo_bot(token: str, api_base: str) -> None:
    """A bare python-telegram-bot echo bot, polling until SIGTERM/SIGINT."""
    from telegram import Update
    from telegram.ext import Application, ContextTypes, MessageHandler, filters

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None and message.text:
            await message.reply_text(message.text)

    app = Application.builder().token(token).base_url(f"{api_base}/bot").base_file_url(f"{api_base}/file/bot").build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_polling(allowed_updates=["message"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/_runtime_support.py", description="The baseline echo bot.")
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="run a bare python-telegram-bot echo bot")
    echo.add_argument("--token", required=True)
    echo.add_argument("--api-base", required=True, help="Bot API server, e.g. http://127.0.0.1:PORT")
    args = parser.parse_args(argv)
    if args.command == "echo":
        run_echo_bot(args.token, args.api_base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
