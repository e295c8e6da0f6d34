"""Tenant runtime footprint, latency and density, measured beside a bare python-telegram-bot echo bot in one run.

Everything talks to one fake Telegram Bot API (tests/fakes/telegram_api.py) served from this process, so update push
times and the fake's reply acceptance times (``SentMessage.at``) are on the same monotonic clock. Redis is
TEST_REDIS_URL / REDIS_URL, or a throwaway Valkey; every key lives under a fresh REDIS_KEY_PREFIX and is deleted at
the end. Config documents are built with ``bot_runtime.contract`` and published with the control plane's
``publish_document`` (no PostgreSQL); the knowledge artifact is the bench KB (bench/kb, loaded as bench/eval.py does)
built with ``KnowledgeIndex.build(...).to_bytes()``.

(a) Baseline: a bare ptb echo bot (bench/_runtime_support.py, its own process, ``run_polling``): cold start (spawn
    → echo of an update already waiting), VmRSS after 50 echoes, update → reply latency p50/p95.
(b) ``python -m bot_runtime --tenant ID`` started directly, with the environment a host gives it and a lease, for a
    tenant with 2 polling-mode Telegram bots (plus the widget channel every published bot has), both on the bench
    KB, no provider keys (offline answerer): cold start (spawn → ready, spawn → answer to an update already
    waiting), VmRSS after 50 answers, latency p50/p95 over the bench questions. Goals: RSS ≤ 1.2 × the echo bot's,
    p95 ≤ the echo bot's + 10 ms.
(c) A real host agent (``python -m bot_runtime.host``) and its supervisord, with 500 tenants published and desired,
    400 of them scaled to zero (idle marker set) and 100 started for real (one webhook-mode Telegram bot each):
    per-runtime and total VmRSS (and PSS), idle CPU over 10 s (utime + stime deltas), supervisord XML-RPC latency
    (getAllProcessInfo p50/p95), program start latency (program file + addProgramFile + startProcess on a probe
    program; supervisord's own reloadConfig as the baseline, also with 200/400/800 programs loaded), cold start of
    scaled-to-zero tenants along the real path (XADD a Telegram update, ``wake_tenant``;
    wake → ready, goal ≤ 1.5 s; wake → answer sent), and the tenants per 24 GiB machine (formula printed).

The echo bot and the runtime run side by side and get the same questions, interleaved, one at a time, each in a new
chat, paced by --interval-ms: background load hits both alike, and the runtime's per-bot (30/s) and per-chat (1/s)
limiters never hold a reply back, so the figures are latency, not queueing. Part (c) starts its runtimes with
RUNTIME_HOST_START_BATCH=10 (--start-batch). Before the agent ran its supervisord calls on a worker thread, renewed
leases from a task of its own and capped the runtimes starting at once (RUNTIME_HOST_MAX_STARTING), a batch of 50 on a
loaded 2-core machine blocked its loop for longer than RUNTIME_LEASE_TTL and every lease expired; ``--start-batch 50``
checks that this stays fixed. The bench reports lease losses seen during its start. Exit status: 0 when every goal is
met, 1 when one is missed, 2 when the bench itself failed (logs kept).

Run: .venv/bin/python bench/runtime_bench.py [--messages 300] [--runtimes 100] [--known 500] [--parts abc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from redis import Redis as SyncRedis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bench._runtime_support import (  # noqa: E402
    MIB,
    alive,
    cpu_seconds,
    extension_packages,
    percentile,
    pss_bytes,
    rss_bytes,
)
from bench.eval import load_kb, load_questions  # noqa: E402
from billing.plans import plan_for  # noqa: E402
from bot_runtime import contract  # noqa: E402
from bot_runtime import lease as leases  # noqa: E402
from bot_runtime.answering.index import KnowledgeIndex  # noqa: E402
from bot_runtime.crypto import encrypt_json  # noqa: E402
from bot_runtime.host.agent import runtime_environment  # noqa: E402
from bot_runtime.host.supervisor import Supervisord  # noqa: E402
from control_plane.runtimes.publish import publish_document, wake_tenant  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI, make_token  # noqa: E402

SUPPORT = ROOT / "bench" / "_runtime_support.py"

GOAL_RSS_RATIO = 1.2
GOAL_P95_DELTA_MS = 10.0
GOAL_COLD_START_S = 1.5

MACHINE_GIB = 24
# Kept off the runtimes' budget on a 24 GiB host: kernel and system services, the host agent and supervisord (both
# measured below, together well under 100 MiB) and page-cache headroom so a deploy or a burst of cold starts fits.
RESERVED_GIB = 2.0
ACTIVE_FRACTIONS = (0.5, 0.25, 0.1)

LONG_POLL_CAP = 10.0  # the fake holds a getUpdates this long at most (ptb's run_polling asks for 10 s)
WARMUP_ANSWERS = 50
IDLE_CPU_SECONDS = 10.0
SETTLE_SECONDS = 3.0
RPC_SAMPLES = 200
PROBE_SAMPLES = 5
COLD_TRIALS = 3
FALLBACK = "Kechirasiz, bu savolga hozircha javobim yo'q."


class BenchError(RuntimeError):
    """The bench itself could not run (a process died, something timed out); the message says where to look."""


# ---------------------------------------------------------------------------------------------------------------------
# Figures


@dataclass(slots=True)
class Figure:
    part: str
    label: str
    value: str
    goal: str = ""
    met: bool | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, part: str, label: str, value: str, goal: str = "", met: bool | None = None) -> None:
        self.figures.append(Figure(part, label, value, goal, met))
        status = "" if met is None else ("  [met]" if met else "  [NOT met]")
        print(f"  {part} {label}: {value}{status}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> None:
        width = max(len(f.label) for f in self.figures) + 2
        value_width = max(len(f.value) for f in self.figures) + 2
        goal_width = max([len(f.goal) for f in self.figures] + [4]) + 2
        print()
        print(f"{'':4}{'figure':<{width}}{'value':>{value_width}}  {'goal':<{goal_width}}result")
        part = ""
        for f in self.figures:
            if f.part != part and part:
                print()
            part = f.part
            result = "" if f.met is None else ("met" if f.met else "NOT met")
            print(f"{f.part:<4}{f.label:<{width}}{f.value:>{value_width}}  {f.goal:<{goal_width}}{result}")
        if self.notes:
            print()
            for text in self.notes:
                print(text)

    @property
    def all_met(self) -> bool:
        return all(f.met is not False for f in self.figures)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


# ---------------------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Processes:
    """Every process the bench started (each in its own session) and the tenants whose runtimes it may have spawned."""

    tenant_prefix: str
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    supervisord_pidfiles: list[Path] = field(default_factory=list)

    def spawn(self, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    @staticmethod
    def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it after ``timeout``; the exit status (None if it never ended)."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        return process.returncode

    def runtime_pids(self) -> list[int]:
        """Live ``python -m bot_runtime --tenant X`` processes of this bench's tenants."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"bot_runtime" in argv and b"--tenant" in argv:
                    tenant = argv[argv.index(b"--tenant") + 1].decode()
                    if tenant.startswith(self.tenant_prefix) and alive(int(entry.name)):
                        found.append(int(entry.name))
        return found

    def cleanup(self) -> None:
        for process in reversed(self.started):
            self.stop(process, timeout=15)
        for pidfile in self.supervisord_pidfiles:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                if alive(pid) and str(pidfile.parent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.runtime_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.runtime_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------------------------
# Documents


def text_update(update_id: int, chat_id: int, text: str, language: str) -> dict[str, Any]:
    """A private-chat text Update, as Telegram would POST it to a webhook."""
    user = {"id": chat_id, "is_bot": False, "first_name": "Alice", "language_code": language}
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Alice"},
            "from": user,
            "text": text,
        },
    }


def bot_config(token: str, *, mode: str, username: str) -> contract.BotConfig:
    """One bot as the control plane publishes it: Telegram (credentials encrypted) plus the widget every bot has."""
    return contract.BotConfig(
        id=str(uuid.uuid4()),
        public_id="b_" + secrets.token_hex(5),
        name="Mebel Uyi",
        language="uz",
        welcome_message="Assalomu alaykum! Mebel Uyi yordamchisiman.",
        fallback_message=FALLBACK,
        artifact_version=1,
        channels=[
            contract.ChannelConfig(
                kind="telegram",
                credentials=encrypt_json({"token": token}),
                settings={"mode": mode, "username": username, "status": "connected"},
            ),
            contract.ChannelConfig(kind="widget", settings={"allowed_origins": ["https://shop.example"]}),
        ],
    )


def tenant_config(tenant_id: str, bots: list[contract.BotConfig]) -> contract.TenantConfig:
    plan = plan_for("business")  # unlimited messages per day: the bench sends hundreds
    return contract.TenantConfig(
        tenant_id=tenant_id,
        version=0,
        plan=contract.PlanLimits(
            code=plan.code,
            messages_per_day=plan.messages_per_day,
            model_tier=plan.model_tier,
            channels=sorted(plan.channels),
        ),
        bots=bots,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The bench


@dataclass(eq=False)
class Subject:
    """A bot under test in the latency runs: its process, its tokens, and what it did."""

    name: str
    process: subprocess.Popen[bytes]
    tokens: list[str]
    log: str
    cold_reply: float = 0.0  # spawn → reply to an update that was waiting
    latencies: list[float] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    rss_after_warmup: int = 0
    rss_after_all: int = 0
    extensions: list[str] = field(default_factory=list)  # C extensions mapped (site-packages top-level names)


class RuntimeBench:
    def __init__(self, args: argparse.Namespace, redis_url: str, workdir: Path, report: Report) -> None:
        self.args = args
        self.redis_url = redis_url
        self.workdir = workdir
        self.report = report
        self.run_id = secrets.token_hex(3)
        self.procs = Processes(tenant_prefix=f"rb{self.run_id}-")
        self.fake = FakeTelegramAPI(long_poll_cap=LONG_POLL_CAP)
        self.redis = SyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=30)
        self.binary_redis = SyncRedis.from_url(redis_url, socket_timeout=30)
        self.loop = asyncio.Runner()
        self.aredis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
        questions = load_questions()
        self.questions = [(str(q["question"]), str(q["lang"]).split("-")[0]) for q in questions]
        self.out_of_kb = {str(q["question"]) for q in questions if not q["in_kb"]}
        self.chats = itertools.count(1_000_000)
        self.updates = itertools.count(1)
        print("building the bench KB artifact ...", flush=True)
        self.artifact = KnowledgeIndex.build(load_kb()).to_bytes()

    # -- plumbing ---------------------------------------------------------------------------------------------

    def items(self, count: int, offset: int = 0) -> list[tuple[str, str]]:
        return [self.questions[(offset + n) % len(self.questions)] for n in range(count)]

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def tail(self, name: str, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        return ""

    def fail(self, message: str, log: str | None = None) -> NoReturn:
        detail = f"\n--- last lines of {self.log(log)} ---\n{self.tail(log)}" if log else ""
        raise BenchError(message + detail)

    def wait_until(self, check: Callable[[], Any], *, within: float, what: str, log: str | None = None) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                self.fail(f"timed out after {within} s waiting for {what}", log)
            time.sleep(0.005)

    def base_env(self) -> dict[str, str]:
        return {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}

    def ask(self, subject: Subject, n: int, text: str, language: str, *, measured: bool) -> None:
        """One question to one of the subject's bots in a new chat; wait for the reply and record the times."""
        token = subject.tokens[n % len(subject.tokens)]
        chat = next(self.chats)
        started = time.monotonic()
        self.fake.push_text(token, chat, text, language_code=language)
        try:
            sent = self.fake.wait_sent(token, chat, count=1, within=15)[0]
        except AssertionError:
            self.fail(f"{subject.name}: no reply to message {n} ({text!r}) within 15 s", subject.log)
        subject.replies.append(sent.text)
        if measured:
            subject.latencies.append(sent.at - started)

    def drive(self, subjects: Sequence[Subject], count: int) -> None:
        """``WARMUP_ANSWERS`` then ``count`` questions to every subject, interleaved (so background load hits them
        alike), one at a time, paced by --interval-ms; VmRSS is read after the warm-up and at the end."""
        interval = self.args.interval_ms / 1000
        next_at = time.monotonic()
        for n, (text, language) in enumerate(self.items(WARMUP_ANSWERS + count, 1)):
            if n == WARMUP_ANSWERS:
                for subject in subjects:
                    subject.rss_after_warmup = rss_bytes(subject.process.pid)
            order = subjects if n % 2 == 0 else list(reversed(subjects))
            for subject in order:
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                started = time.monotonic()
                self.ask(subject, n, text, language, measured=n >= WARMUP_ANSWERS)
                next_at = max(started + interval, time.monotonic())
        for subject in subjects:
            if subject.process.poll() is not None:
                self.fail(f"{subject.name} exited with {subject.process.returncode}", subject.log)
            subject.rss_after_all = rss_bytes(subject.process.pid)

    def answer_times(self, log: str) -> list[float]:
        """``answer_ms`` of every ``telegram.answered`` line of a runtime's log, in seconds, oldest first."""
        times = []
        with contextlib.suppress(OSError):
            for line in self.log(log).read_text(errors="replace").splitlines():
                if '"telegram.answered"' in line:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        times.append(float(json.loads(line)["answer_ms"]) / 1000)
        return times

    def agent_events(self) -> dict[str, int]:
        """How many times each event appears in the host agent's log so far."""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.log("host-agent").read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    event = str(json.loads(line)["event"])
                    counts[event] = counts.get(event, 0) + 1
        return counts

    def ready_pids(self, tenants: Sequence[str]) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hget(contract.ready_key(tenant), "pid")
            values = pipe.execute()
        return {tenant: int(pid) for tenant, pid in zip(tenants, values, strict=True) if pid and alive(int(pid))}

    def publish(self, configs: Sequence[contract.TenantConfig], *, desired: bool) -> None:
        async def publish_all() -> None:
            for config in configs:
                if not await publish_document(self.aredis, config, desired=desired):
                    raise BenchError(f"publishing {config.tenant_id} was refused")

        self.loop.run(publish_all())

    def store_artifacts(self, bots: Sequence[contract.BotConfig]) -> None:
        with self.binary_redis.pipeline(transaction=False) as pipe:
            for bot in bots:
                pipe.set(contract.artifact_key(bot.id, bot.artifact_version), self.artifact)
            pipe.execute()

    # -- (a) + (b): the echo bot and one runtime --------------------------------------------------------------

    def start_echo(self) -> Subject:
        """(a) The bare ptb echo bot, spawned with an update already waiting."""
        token = make_token(5_550_001)
        self.fake.register_bot(token, username="bench_echo_bot")
        waiting_chat = next(self.chats)
        self.fake.push_text(token, waiting_chat, "Salom!", language_code="uz")
        started = time.monotonic()
        process = self.procs.spawn(
            [sys.executable, str(SUPPORT), "echo", "--token", token, "--api-base", self.fake.base_url],
            env=self.base_env(),
            log=self.log("echo-bot"),
        )
        subject = Subject("the echo bot", process, [token], "echo-bot")
        try:
            first = self.fake.wait_sent(token, waiting_chat, within=30)[0]
        except AssertionError:
            self.fail("the echo bot did not answer the waiting update within 30 s", "echo-bot")
        subject.cold_reply = first.at - started
        return subject

    def start_runtime(self) -> tuple[Subject, leases.Lease, dict[str, float]]:
        """(b) A runtime for a tenant with 2 polling bots on the bench KB, spawned the way a host spawns it (its
        environment and a lease), with a question already waiting for the first bot."""
        tenant_id = f"{self.procs.tenant_prefix}single"
        tokens = [make_token(5_550_101), make_token(5_550_102)]
        bots = []
        for n, token in enumerate(tokens):
            username = f"bench_shop{n}_bot"
            self.fake.register_bot(token, username=username)
            bots.append(bot_config(token, mode="polling", username=username))
        self.store_artifacts(bots)
        # Not desired: no host agent may pick this tenant up (part (c) runs one on the same Redis).
        self.publish([tenant_config(tenant_id, bots)], desired=False)
        host_id = f"bench-direct-{self.run_id}"
        lease = self.loop.run(leases.acquire(self.aredis, tenant_id, host_id, 3_600_000))
        if lease is None:
            self.fail(f"could not lease {tenant_id}")
        env = {
            **runtime_environment(self.base_env()),
            "RUNTIME_HOST_ID": host_id,
            "TENANT": tenant_id,
            "RUNTIME_LEASE_TOKEN": str(lease.token),
        }
        text, language = self.questions[0]
        waiting_chat = next(self.chats)
        self.fake.push_text(tokens[0], waiting_chat, text, language_code=language)
        ready_key = contract.ready_key(tenant_id)
        started = time.monotonic()
        process = self.procs.spawn(
            [sys.executable, "-m", "bot_runtime", "--tenant", tenant_id], env=env, log=self.log("runtime")
        )
        subject = Subject("the runtime", process, tokens, "runtime")
        self.wait_until(
            lambda: self.redis.hget(ready_key, "pid") == str(process.pid) or process.poll() is not None,
            within=30,
            what="the runtime to be ready",
            log="runtime",
        )
        figures = {"ready": time.monotonic() - started, "rss_ready": rss_bytes(process.pid)}
        if process.poll() is not None:
            self.fail(f"the runtime exited with {process.returncode}", "runtime")
        try:
            first = self.fake.wait_sent(tokens[0], waiting_chat, within=30)[0]
        except AssertionError:
            self.fail("the runtime did not answer the waiting update within 30 s", "runtime")
        subject.cold_reply = first.at - started
        figures["rss_first"] = rss_bytes(process.pid)
        return subject, lease, figures

    def bench_pair(self) -> None:
        print("(a) bare python-telegram-bot echo bot, (b) runtime with 2 polling bots on the bench KB ...", flush=True)
        echo = self.start_echo()
        try:
            runtime, lease, cold = self.start_runtime()
            try:
                self.drive([echo, runtime], self.args.messages)
                pss = pss_bytes(runtime.process.pid)
                echo.extensions = extension_packages(echo.process.pid)
                runtime.extensions = extension_packages(runtime.process.pid)
            finally:
                code = self.procs.stop(runtime.process)
                self.loop.run(leases.release(self.aredis, lease))
        finally:
            self.procs.stop(echo.process)
        if code != contract.EXIT_IDLE:
            self.report.note(f"note: the part (b) runtime exited with {code} on SIGTERM (expected 0)")
        self.report_pair(echo, runtime, cold, pss)

    def report_pair(self, echo: Subject, runtime: Subject, cold: dict[str, float], pss: int) -> None:
        r = self.report
        echo_p50, echo_p95 = percentile(echo.latencies, 0.5), percentile(echo.latencies, 0.95)
        rt_p50, rt_p95 = percentile(runtime.latencies, 0.5), percentile(runtime.latencies, 0.95)
        r.add("(a)", "echo bot: spawn → echo of a waiting update", ms(echo.cold_reply))
        r.add("(a)", f"echo bot: VmRSS after {WARMUP_ANSWERS} echoes", mib(echo.rss_after_warmup))
        r.add(
            "(a)", f"echo bot: update → reply p50 / p95 (n={len(echo.latencies)})", f"{ms(echo_p50)} / {ms(echo_p95)}"
        )

        r.add("(a)", "echo bot: C extensions mapped", ", ".join(echo.extensions) or "none")

        r.add("(b)", "runtime: spawn → ready", ms(cold["ready"]))
        r.add("(b)", "runtime: spawn → answer to a waiting update", ms(runtime.cold_reply))
        r.add("(b)", "runtime: VmRSS at ready (no KB loaded yet)", mib(cold["rss_ready"]))
        r.add("(b)", "runtime: VmRSS after its first answer (1 KB loaded)", mib(cold["rss_first"]))
        r.add("(b)", f"runtime: VmRSS after {WARMUP_ANSWERS} answers (2 bots, 2 KBs)", mib(runtime.rss_after_warmup))
        r.add(
            "(b)",
            f"runtime: VmRSS / PSS after {len(runtime.replies) + 1} answers",
            f"{mib(runtime.rss_after_all)} / {mib(pss)}",
        )
        ratio = runtime.rss_after_warmup / echo.rss_after_warmup
        r.add("(b)", "RSS ratio runtime / echo bot", f"{ratio:.2f}x", f"≤ {GOAL_RSS_RATIO}x", ratio <= GOAL_RSS_RATIO)
        r.add("(b)", f"runtime: update → answer p50 / p95 (n={len(runtime.latencies)})", f"{ms(rt_p50)} / {ms(rt_p95)}")
        delta = (rt_p95 - echo_p95) * 1000
        r.add(
            "(b)",
            "p95 difference runtime − echo bot",
            f"{delta:+.1f} ms",
            f"≤ {GOAL_P95_DELTA_MS:.0f} ms",
            delta <= GOAL_P95_DELTA_MS,
        )
        engine = self.answer_times(runtime.log)[-len(runtime.latencies) :]
        if len(engine) == len(runtime.latencies):
            r.add(
                "(b)",
                "  of which answer_ms (engine + typing action; its log) p50 / p95",
                f"{ms(percentile(engine, 0.5))} / {ms(percentile(engine, 0.95))}",
            )
        r.add("(b)", "runtime: C extensions mapped", ", ".join(runtime.extensions) or "none")
        fallbacks = sum(1 for reply in runtime.replies if reply == FALLBACK)
        out_of_kb = sum(1 for text, _ in self.items(len(runtime.replies), 1) if text in self.out_of_kb)
        r.add(
            "(b)",
            "runtime: answers from the KB / fallbacks (out-of-KB questions)",
            f"{len(runtime.replies) - fallbacks} / {fallbacks} ({out_of_kb})",
        )

    # -- (c) a host with 100 runtimes under supervisord, 500 tenants known ------------------------------------

    def bench_host(self) -> None:
        runtimes, known = self.args.runtimes, self.args.known
        print(f"(c) host agent + supervisord: {known} tenants desired, {runtimes} running ...", flush=True)
        prefix = self.procs.tenant_prefix
        tenants = [f"{prefix}h{n:04d}" for n in range(known)]
        running, idle = tenants[:runtimes], tenants[runtimes:]
        cold = idle[:COLD_TRIALS]
        tokens: dict[str, str] = {}
        configs = []
        for n, tenant_id in enumerate(tenants):
            token = make_token(6_000_000 + n)
            username = f"bench_t{n}_bot"
            self.fake.register_bot(token, username=username)
            tokens[tenant_id] = token
            configs.append(tenant_config(tenant_id, [bot_config(token, mode="webhook", username=username)]))
        by_tenant = {config.tenant_id: config for config in configs}
        self.store_artifacts([by_tenant[tenant_id].bots[0] for tenant_id in cold])
        started = time.perf_counter()
        self.publish(configs, desired=True)
        publish_seconds = time.perf_counter() - started
        with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id in idle:  # scaled to zero: desired, but started only by the next message
                pipe.set(contract.idle_key(tenant_id), f"{time.time():.3f}")
            pipe.execute()

        state_dir = Path(tempfile.mkdtemp(prefix="bfrb-", dir="/tmp")) / "host"
        host_id = f"bench-host-{self.run_id}"
        supervisor = Supervisord(
            state_dir, identifier="bench-probe", python=sys.executable, project_root=ROOT, environment={}
        )
        self.procs.supervisord_pidfiles.append(supervisor.pidfile)
        env = {
            **self.base_env(),
            "RUNTIME_HOST_ID": host_id,
            "RUNTIME_HOST_DIR": str(state_dir),
            "RUNTIME_IDLE_SECONDS": "3600",  # nothing scales to zero by itself during the bench
            "RUNTIME_HOST_MAX_RUNTIMES": "",
            "RUNTIME_HOST_START_BATCH": str(self.args.start_batch),
        }
        launched = time.monotonic()
        agent = self.procs.spawn([sys.executable, "-m", "bot_runtime.host"], env=env, log=self.log("host-agent"))
        try:
            self._host_figures(agent, supervisor, running, idle, cold, tokens, by_tenant, launched, publish_seconds)
        except BaseException:
            self.procs.stop(agent, timeout=30)
            raise
        else:
            stopping = time.monotonic()
            code = self.procs.stop(agent, timeout=30)
            self.report.add(
                "(c)",
                f"host agent SIGTERM → everything stopped ({len(running) + len(cold)} runtimes)",
                f"{time.monotonic() - stopping:.1f} s",
            )
            if code != 0:
                self.report.note(f"note: the host agent exited with {code} on SIGTERM (expected 0)")
        finally:
            shutil.rmtree(state_dir.parent, ignore_errors=True)

    def _host_figures(
        self,
        agent: subprocess.Popen[bytes],
        supervisor: Supervisord,
        running: list[str],
        idle: list[str],
        cold: list[str],
        tokens: dict[str, str],
        by_tenant: dict[str, contract.TenantConfig],
        launched: float,
        publish_seconds: float,
    ) -> None:
        r = self.report
        count = len(running)

        def all_ready() -> dict[str, int] | None:
            if agent.poll() is not None:
                self.fail(f"the host agent exited with {agent.returncode}", "host-agent")
            pids = self.ready_pids(running)
            return pids if len(pids) == count else None

        try:
            pids = self.wait_until(
                all_ready, within=60 + count * 1.2, what=f"{count} runtimes to be ready", log="host-agent"
            )
        except BenchError as exc:
            events = self.agent_events()
            raise BenchError(
                f"{exc}\nagent so far: {events.get('host.runtime.started', 0)} starts,"
                f" {events.get('host.runtime.ready', 0)} ready, {events.get('host.lease.lost', 0)} leases lost,"
                f" {events.get('host.runtime.exited', 0)} exits"
            ) from None
        all_ready_seconds = time.monotonic() - launched
        started_idle = self.ready_pids(idle)
        if started_idle:
            self.fail(f"{len(started_idle)} scaled-to-zero tenants were started without a message", "host-agent")
        time.sleep(SETTLE_SECONDS)

        runtime_pids = sorted(pids.values())
        supervisord_pid = supervisor.pid or 0
        rss = [rss_bytes(pid) for pid in runtime_pids]
        pss = [pss_bytes(pid) for pid in runtime_pids]
        agent_rss, supervisord_rss = rss_bytes(agent.pid), rss_bytes(supervisord_pid)
        watched = [*runtime_pids, supervisord_pid, agent.pid]
        before = {pid: cpu_seconds(pid) for pid in watched}
        wall = time.monotonic()
        time.sleep(IDLE_CPU_SECONDS)
        wall = time.monotonic() - wall
        after = {pid: cpu_seconds(pid) for pid in watched}
        if any(not alive(pid) for pid in runtime_pids):
            self.fail("a runtime died while idle", "host-agent")
        runtime_cpu = sum(after[pid] - before[pid] for pid in runtime_pids)
        supervisord_cpu = after[supervisord_pid] - before[supervisord_pid]
        agent_cpu = after[agent.pid] - before[agent.pid]

        rpc: list[float] = []
        for _ in range(RPC_SAMPLES):
            t0 = time.perf_counter()
            info = supervisor.rpc("getAllProcessInfo")
            rpc.append(time.perf_counter() - t0)
        programs = len(info)
        reloads, starts = self._probe_program_start(supervisor)
        scaling = self._probe_scaling(supervisor, programs)

        cold_ready, cold_answer = self._cold_starts(cold, tokens, by_tenant)
        cold_rss = [rss_bytes(pid) for pid in self.ready_pids(cold).values()]

        mean_rss, mean_pss = sum(rss) / len(rss), sum(pss) / len(pss)
        per_runtime_cpu = runtime_cpu / wall / count
        r.add("(c)", f"publish {len(running) + len(idle)} config documents", f"{publish_seconds:.2f} s")
        r.add(
            "(c)",
            f"agent launch → {count} runtimes ready (RUNTIME_HOST_START_BATCH={self.args.start_batch})",
            f"{all_ready_seconds:.1f} s",
        )
        events = self.agent_events()
        lost, exited = events.get("host.lease.lost", 0), events.get("host.runtime.exited", 0)
        r.add("(c)", "  lease losses / unexpected runtime exits meanwhile", f"{lost} / {exited}")
        if lost or exited:
            r.note(
                f"WARNING: while starting {count} runtimes the agent lost {lost} leases and saw {exited} runtimes exit"
                f" (see {self.log('host-agent')}; rerun with --keep-logs to keep it)."
            )
        r.add("(c)", f"{count} idle runtimes: total VmRSS / PSS", f"{mib(sum(rss))} / {mib(sum(pss))}")
        r.add("(c)", "per runtime VmRSS mean / max", f"{mib(mean_rss)} / {mib(max(rss))}")
        r.add("(c)", "per runtime PSS mean", mib(mean_pss))
        r.add("(c)", "idle runtime: C extensions mapped", ", ".join(extension_packages(runtime_pids[0])) or "none")
        r.add("(c)", "host agent / supervisord VmRSS", f"{mib(agent_rss)} / {mib(supervisord_rss)}")
        r.add("(c)", f"idle CPU over {wall:.0f} s: {count} runtimes", f"{runtime_cpu / wall * 100:.1f} % of a core")
        r.add("(c)", "idle CPU per runtime", f"{per_runtime_cpu * 1000:.2f} ms/s")
        r.add(
            "(c)",
            "idle CPU host agent / supervisord",
            f"{agent_cpu / wall * 100:.1f} % / {supervisord_cpu / wall * 100:.1f} %",
        )
        r.add(
            "(c)",
            f"getAllProcessInfo p50 / p95 ({programs} programs, n={len(rpc)})",
            f"{ms(percentile(rpc, 0.5))} / {ms(percentile(rpc, 0.95))}",
        )
        r.add(
            "(c)",
            f"program start as the agent does it: write file + addProgramFile + startProcess p50 (n={len(starts)})",
            f"{ms(percentile(starts, 0.5))} (max {ms(max(starts))})",
        )
        r.add("(c)", "  baseline: supervisord's own reloadConfig p50, same programs", ms(percentile(reloads, 0.5)))
        for loaded, reload_s, add_s in scaling:
            r.add(
                "(c)",
                f"  with {loaded} programs loaded: reloadConfig / addProgramFile p50",
                f"{ms(reload_s)} / {ms(add_s)} ({reload_s / add_s:.0f}×)",
            )
        worst = max(cold_ready)
        r.add(
            "(c)",
            f"cold start wake → ready, {len(running) + len(idle)} known (median / worst of {len(cold_ready)})",
            f"{ms(percentile(cold_ready, 0.5))} / {ms(worst)}",
            f"≤ {GOAL_COLD_START_S} s",
            worst <= GOAL_COLD_START_S,
        )
        r.add(
            "(c)",
            "cold start wake → answer sent (median / worst)",
            f"{ms(percentile(cold_answer, 0.5))} / {ms(max(cold_answer))}",
        )
        if cold_rss:
            r.add("(c)", "cold-started runtime VmRSS after its answer (1 bot, KB)", mib(sum(cold_rss) / len(cold_rss)))
        self._extrapolate(mean_rss, mean_pss, per_runtime_cpu, agent_rss + supervisord_rss)

    @staticmethod
    def _write_probe(path: Path, name: str) -> None:
        path.write_text(
            f"[program:{name}]\ncommand=/bin/sleep 120\nautostart=false\nautorestart=false\nstartsecs=0\n"
            "startretries=0\nstopsignal=KILL\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
        )

    def _probe_program_start(self, supervisor: Supervisord) -> tuple[list[float], list[float]]:
        """Time the program start the agent runs for a wake (file + addProgramFile + startProcess) on a probe
        program beside the runtimes, and supervisord's own reloadConfig on the same program set as the baseline."""
        name = "benchprobe"
        path = supervisor.conf_dir / f"{name}.conf"
        reloads: list[float] = []
        starts: list[float] = []
        try:
            for _ in range(PROBE_SAMPLES):
                t0 = time.perf_counter()
                self._write_probe(path, name)
                supervisor.rpc("addProgramFile", str(path), namespace="botfactory")
                supervisor.rpc("startProcess", name, False)
                starts.append(time.perf_counter() - t0)
                supervisor.rpc("stopProcess", name, True)
                supervisor.rpc("forgetProgram", name, namespace="botfactory")
                t0 = time.perf_counter()
                supervisor.rpc("reloadConfig")
                reloads.append(time.perf_counter() - t0)
                path.unlink()
        finally:
            with contextlib.suppress(Exception):
                supervisor.rpc("stopProcess", name, True)
            with contextlib.suppress(Exception):
                supervisor.rpc("forgetProgram", name, namespace="botfactory")
            path.unlink(missing_ok=True)
        return reloads, starts

    def _probe_scaling(self, supervisor: Supervisord, running: int) -> list[tuple[int, float, float]]:
        """reloadConfig against addProgramFile as the program count grows (stopped filler programs beside the
        running ones): the first re-reads every file, the second one. Returns (programs, reload p50, add p50)."""
        fillers: list[str] = []
        rows: list[tuple[int, float, float]] = []
        try:
            for target in (200, 400, 800):
                while running + len(fillers) < target:
                    name = f"benchfill{len(fillers)}"
                    self._write_probe(supervisor.conf_dir / f"{name}.conf", name)
                    supervisor.rpc("addProgramFile", str(supervisor.conf_dir / f"{name}.conf"), namespace="botfactory")
                    fillers.append(name)
                reloads: list[float] = []
                adds: list[float] = []
                path = supervisor.conf_dir / "benchprobe.conf"
                for _ in range(3):
                    self._write_probe(path, "benchprobe")
                    t0 = time.perf_counter()
                    supervisor.rpc("addProgramFile", str(path), namespace="botfactory")
                    adds.append(time.perf_counter() - t0)
                    supervisor.rpc("forgetProgram", "benchprobe", namespace="botfactory")
                    t0 = time.perf_counter()
                    supervisor.rpc("reloadConfig")
                    reloads.append(time.perf_counter() - t0)
                    path.unlink()
                rows.append((target, percentile(reloads, 0.5), percentile(adds, 0.5)))
        finally:
            for name in fillers:
                with contextlib.suppress(Exception):
                    supervisor.rpc("forgetProgram", name, namespace="botfactory")
                (supervisor.conf_dir / f"{name}.conf").unlink(missing_ok=True)
            (supervisor.conf_dir / "benchprobe.conf").unlink(missing_ok=True)
        return rows

    def _cold_starts(
        self, cold: list[str], tokens: dict[str, str], by_tenant: dict[str, contract.TenantConfig]
    ) -> tuple[list[float], list[float]]:
        """A webhook message for each scaled-to-zero tenant, the way the control plane queues it: XADD, wake."""
        to_ready: list[float] = []
        to_answer: list[float] = []
        for n, tenant_id in enumerate(cold):
            bot = by_tenant[tenant_id].bots[0]
            text, language = self.questions[n % len(self.questions)]
            chat = next(self.chats)
            update = text_update(next(self.updates), chat, text, language)
            event = contract.InboundEvent(
                event_id=f"tg:{bot.id}:{update['update_id']}",
                bot_id=bot.id,
                kind="telegram.update",
                payload=update,
                received_at=time.time(),
            )
            ready_key = contract.ready_key(tenant_id)
            started = time.monotonic()
            self.redis.xadd(contract.inbound_stream(tenant_id), event.to_fields())
            self.loop.run(wake_tenant(self.aredis, tenant_id))
            self.wait_until(
                lambda key=ready_key: self.redis.exists(key),
                within=30,
                what=f"cold start of {tenant_id}",
                log="host-agent",
            )
            to_ready.append(time.monotonic() - started)
            try:
                sent = self.fake.wait_sent(tokens[tenant_id], chat, within=30)[0]
            except AssertionError:
                self.fail(f"the cold-started runtime of {tenant_id} did not answer within 30 s", "host-agent")
            to_answer.append(sent.at - started)
            time.sleep(1.0)
        return to_ready, to_answer

    def _extrapolate(self, mean_rss: float, mean_pss: float, per_runtime_cpu: float, host_overhead: float) -> None:
        budget = (MACHINE_GIB - RESERVED_GIB) * 1024 * MIB
        by_rss = math.floor(budget / mean_rss)
        by_pss = math.floor(budget / mean_pss)
        r = self.report
        r.add("(c)", f"runtimes per {MACHINE_GIB} GiB machine (by VmRSS)", f"{by_rss}")
        r.add("(c)", f"runtimes per {MACHINE_GIB} GiB machine (by PSS)", f"{by_pss}")
        r.add("(c)", f"idle CPU of {by_rss} runtimes", f"{by_rss * per_runtime_cpu:.2f} cores")
        r.note(
            f"runtimes per machine = floor(({MACHINE_GIB} GiB − reserved {RESERVED_GIB:g} GiB) / per-runtime memory)\n"
            f"  by VmRSS: floor({budget / MIB:.0f} MiB / {mean_rss / MIB:.1f} MiB) = {by_rss}"
            f"  (VmRSS counts shared pages in every process: the safe bound)\n"
            f"  by PSS:   floor({budget / MIB:.0f} MiB / {mean_pss / MIB:.1f} MiB) = {by_pss}"
            f"  (shared pages divided among the processes: closer to what the kernel really uses)\n"
            f"  reserved covers the OS, the host agent + supervisord ({host_overhead / MIB:.0f} MiB measured) and"
            " headroom; idle runtimes here have not loaded a KB (it loads on the first question)."
        )
        views = ", ".join(f"{fraction:.0%} active → {math.floor(by_rss / fraction)}" for fraction in ACTIVE_FRACTIONS)
        r.note(
            "idle scale-to-zero: tenants per machine = floor(runtimes per machine / active fraction), where the\n"
            "  active fraction is the share of tenants with traffic within RUNTIME_IDLE_SECONDS;\n"
            f"  by VmRSS: {views}."
        )

    # -- the whole run ----------------------------------------------------------------------------------------

    def run(self) -> None:
        parts = self.args.parts
        with self.fake.serve():
            try:
                print(f"fake Bot API at {self.fake.base_url}; logs in {self.workdir}", flush=True)
                os.environ["TELEGRAM_API_BASE_URL"] = self.fake.base_url
                if "a" in parts or "b" in parts:
                    self.bench_pair()
                if "c" in parts:
                    self.bench_host()
            finally:
                self.procs.cleanup()
                self.fake.reset()  # wakes any long poll still held, so the server stops at once

    def close(self) -> None:
        prefix = contract.prefix()
        with contextlib.suppress(Exception):
            keys = list(self.redis.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                self.redis.delete(*keys[start : start + 1000])
        with contextlib.suppress(Exception):
            self.loop.run(self.aredis.aclose())
        self.loop.close()
        self.redis.close()
        self.binary_redis.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from control_plane.kit.embedded import throwaway_valkey

    with throwaway_valkey() as embedded_url:
        yield embedded_url


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="measured questions per bot (after 50 warm-up ones)")
    parser.add_argument("--interval-ms", type=float, default=25.0, help="pacing between messages")
    parser.add_argument("--runtimes", type=int, default=100, help="idle runtimes started in part (c)")
    parser.add_argument("--known", type=int, default=500, help="tenants published and desired in part (c)")
    parser.add_argument(
        "--start-batch", type=int, default=10, help="RUNTIME_HOST_START_BATCH for part (c) (programs per agent tick)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--parts", default="abc", help="which parts to run: ab (run together) and/or c")
    args = parser.parse_args()
    if args.known < args.runtimes + COLD_TRIALS:
        parser.error(f"--known must be at least --runtimes + {COLD_TRIALS}")
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="bf-runtime-bench-"))
    failed = False
    with redis_server() as redis_url:
        os.environ.update(
            {
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": f"bfbench{secrets.token_hex(3)}:",
                "RUNTIME_SECRET_KEY": Fernet.generate_key().decode(),
                "LOG_LEVEL": "INFO",
            }
        )
        import telegram

        print(
            f"runtime bench: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"python-telegram-bot {telegram.__version__}, Redis {redis_url}",
            flush=True,
        )
        bench = RuntimeBench(args, redis_url, workdir, report)
        try:
            bench.run()
        except BenchError as exc:
            failed = True
            print(f"\nbench failed: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            failed = True
            print("\ninterrupted; every process the bench started was stopped", file=sys.stderr)
        finally:
            bench.close()
    if report.figures:
        report.render()
    print(f"\nwhole bench: {time.monotonic() - started:.0f} s")
    if failed:
        print(f"logs kept in {workdir}")
        return 2
    if args.keep_logs:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if report.all_met:
        print("every goal met")
        return 0
    print("goals NOT met: " + "; ".join(f.label for f in report.figures if f.met is False))
    return 1


if __name__ == "__main__":
    sys.exit(main())
