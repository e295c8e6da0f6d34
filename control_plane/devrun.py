"""`make run`: the whole product on one machine, in the foreground, with nothing but Python installed.

Steps: load (or generate once) development secrets in ``.data/secrets``; start the embedded PostgreSQL and Valkey
when DATABASE_URL / REDIS_URL are unset (each decided on its own, data in ``.data/pg`` and ``.data/valkey``);
migrate; then start every process in PROCESSES as a child, prefix its output with its name, restart it when it
dies, and stop everything on Ctrl-C / SIGTERM within 15 s.

A second `make run` works after a kill -9 of this launcher: the lock in ``.data/run`` dies with its holder, the
children recorded in ``.data/run/devrun.json`` are killed by session, and the embedded servers recover from their
own stale pid files (see control_plane/kit/embedded.py). On Linux the children and servers also get a signal from
the kernel when the launcher dies, so a kill -9 rarely leaves anything behind in the first place.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from control_plane.kit import embedded

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".data"
RUN = DATA / "run"
SECRETS_FILE = DATA / "secrets"
STATE_FILE = RUN / "devrun.json"
LOCK_FILE = RUN / "devrun.lock"

HOST = "127.0.0.1"
PORT = int(os.environ.get("PORT", "8000"))
URL = f"http://{HOST}:{PORT}"
PY = sys.executable
CLI = (PY, "-m", "control_plane.cli")

# Shutdown budget (the issue asks for everything gone within 15 s): children get SIGTERM and CHILD_GRACE seconds,
# then SIGKILL (+1 s to reap); then Valkey (SIGTERM, +1 s SIGKILL) and PostgreSQL (fast, immediate, SIGKILL: at most
# ~4.6 s). Worst case about 14.6 s; a normal stop takes 1-3 s.
CHILD_GRACE = 6.0
VALKEY_STOP = 2.0
POSTGRES_STOP = 3.0
RESTART_BACKOFF_MAX = 30.0


@dataclass(frozen=True)
class ProcessSpec:
    """One product process: its name (the output prefix), argv, and the `botfactory` subcommand it needs."""

    name: str
    argv: tuple[str, ...]
    # Skipped while the CLI has no such subcommand, so the list can name processes that later work adds.
    subcommand: str | None = None


# Every process `make run` supervises. Later work adds its line here.
PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec(
        "web",
        (PY, "-m", "uvicorn", "control_plane.app:app", "--host", HOST, "--port", str(PORT))
        # Close lingering keep-alive / streaming connections so a shutdown fits the budget.
        + ("--timeout-graceful-shutdown", "5")
        + (("--reload",) if os.environ.get("DEVRUN_RELOAD") else ()),
    ),
    ProcessSpec("worker", (*CLI, "worker"), subcommand="worker"),  # RQ jobs, delayed jobs included
    ProcessSpec("scheduler", (*CLI, "scheduler"), subcommand="scheduler"),  # periodic jobs
    ProcessSpec("events", (*CLI, "events-consume"), subcommand="events-consume"),
    ProcessSpec("runtimes", (*CLI, "runtime-host"), subcommand="runtime-host"),
)

# Development secrets generated once. ENCRYPTION_KEY and RUNTIME_SECRET_KEY are Fernet keys (urlsafe base64 of 32
# random bytes, what Fernet.generate_key() returns).
SECRET_GENERATORS: dict[str, Callable[[], str]] = {
    "JWT_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "ENCRYPTION_KEY": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "RUNTIME_SECRET_KEY": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
}

_COLOURS = ("36", "33", "35", "32", "34", "31")
_out_lock = threading.Lock()
_tty = sys.stdout.isatty()


def say(name: str, text: str, colour: str = "1") -> None:
    """Print one line with a fixed-width name prefix; the lock keeps lines from different children whole."""
    prefix = f"{name:<9}| "
    if _tty:
        prefix = f"\033[{colour}m{prefix}\033[0m"
    with _out_lock:
        sys.stdout.write(prefix + text.rstrip("\n") + "\n")
        sys.stdout.flush()


def log(text: str) -> None:
    say("devrun", text)


class Shutdown(Exception):
    """Raised by the signal handler while we are still starting up."""


# --------------------------------------------------------------------------------------------------------------
# Environment and secrets


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                values[key.strip()] = value.strip().strip("'\"")
    return values


def configured(env: dict[str, str], dotenv: dict[str, str], key: str) -> bool:
    """Set in the environment or in ``.env`` (which the app's settings read too)."""
    return bool(env.get(key) or dotenv.get(key))


def load_secrets() -> dict[str, str]:
    """Read ``.data/secrets``, adding any secret it lacks; print a newly generated admin password once."""
    existing = _read_env_file(SECRETS_FILE)
    missing = {key: make() for key, make in SECRET_GENERATORS.items() if not existing.get(key)}
    if missing:
        DATA.mkdir(parents=True, exist_ok=True)
        merged = {**existing, **missing}
        body = "# Development secrets generated by `make run`; never used in production. Delete to regenerate.\n"
        body += "".join(f"{key}={value}\n" for key, value in merged.items())
        SECRETS_FILE.touch(mode=0o600, exist_ok=True)
        SECRETS_FILE.write_text(body)
        log(f"generated {', '.join(missing)} into {SECRETS_FILE.relative_to(ROOT)}")
        if "ADMIN_PASSWORD" in missing:
            log(f"admin password (shown once; kept in .data/secrets): {missing['ADMIN_PASSWORD']}")
        return merged
    return existing


def build_env() -> dict[str, str]:
    env = dict(os.environ)
    dotenv = _read_env_file(ROOT / ".env")
    for key, value in load_secrets().items():
        # A value the developer set (shell or .env) wins over the generated one.
        if not configured(env, dotenv, key):
            env[key] = value
    if not configured(env, dotenv, "ENVIRONMENT"):
        env["ENVIRONMENT"] = "development"
    if not configured(env, dotenv, "DOMAIN_URL"):
        env["DOMAIN_URL"] = URL
    env["PYTHONUNBUFFERED"] = "1"  # children's lines reach us as they are written
    return env


# --------------------------------------------------------------------------------------------------------------
# Run state: one launcher at a time, and the children a killed launcher left behind


def acquire_lock() -> IO[str]:
    """Hold ``.data/run/devrun.lock`` for our lifetime; the kernel releases it if we are killed."""
    RUN.mkdir(parents=True, exist_ok=True)
    handle = open(LOCK_FILE, "a+")  # held open until we exit, on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        log(f"another `make run` is running (pid {holder}); stop it first")
        sys.exit(1)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _session_members(sid: int, born_after: float) -> list[psutil.Process]:
    """Live processes in session `sid` that started after its leader did (a reused session id is not ours).

    Zombies are left out: they are already dead and only wait for their parent (init, after a kill -9 of ours).
    """
    members = []
    for proc in psutil.process_iter(["create_time", "status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["create_time"] < born_after - 1.0:
                continue
            if os.getsid(proc.pid) == sid:
                members.append(proc)
    return members


def reap_orphans() -> None:
    """Kill the children a previous launcher recorded but never stopped (it was killed with -9)."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return
    orphans: list[psutil.Process] = []
    for child in state.get("children", []):
        orphans += _session_members(int(child["pid"]), float(child["create_time"]))
    if orphans:
        log(f"stopping {len(orphans)} process(es) left by a previous run")
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(orphans, timeout=5.0)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    STATE_FILE.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------------------
# Children


@dataclass
class Child:
    spec: ProcessSpec
    colour: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    create_time: float = 0.0
    restart_at: float | None = None
    backoff: float = 1.0
    threads: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Starts the children, pipes their output, restarts the ones that die, stops them all on request."""

    def __init__(self, specs: list[ProcessSpec], env: dict[str, str]) -> None:
        self.children = [Child(spec, _COLOURS[i % len(_COLOURS)]) for i, spec in enumerate(specs)]
        self.env = env
        self.web_up = False

    def start(self, child: Child) -> None:
        proc = subprocess.Popen(
            child.spec.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: we signal the whole tree (rq's work horses, uvicorn's reloader) and a Ctrl-C in the
            # terminal reaches only us, so we decide the order of shutdown.
            start_new_session=True,
            # Linux: the kernel SIGTERMs the child if we die, even by kill -9.
            preexec_fn=embedded.pdeathsig_preexec(signal.SIGTERM),
        )
        child.proc = proc
        child.started_at = time.monotonic()
        with contextlib.suppress(psutil.Error):
            child.create_time = psutil.Process(proc.pid).create_time()
        child.restart_at = None
        assert proc.stdout is not None
        reader = threading.Thread(target=self._pipe, args=(child.spec.name, child.colour, proc.stdout), daemon=True)
        reader.start()
        child.threads.append(reader)
        self.save_state()

    @staticmethod
    def _pipe(name: str, colour: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            say(name, raw.decode("utf-8", errors="replace"), colour)
        stream.close()

    def save_state(self) -> None:
        children = [
            {"name": c.spec.name, "pid": c.proc.pid, "create_time": c.create_time}
            for c in self.children
            if c.proc is not None
        ]
        state = {"launcher": os.getpid(), "children": children}
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(STATE_FILE)

    def tick(self) -> None:
        """One supervision step: notice exits, restart with backoff, announce the web once it answers."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                # A process that ran for a while starts over at 1 s; a crash loop backs off up to 30 s.
                if now - child.started_at > 60:
                    child.backoff = 1.0
                delay, child.backoff = child.backoff, min(child.backoff * 2, RESTART_BACKOFF_MAX)
                child.restart_at = now + delay
                child.proc = None
                if child.spec.name == "web":
                    self.web_up = False
                log(f"{child.spec.name} exited with code {code}; restarting in {delay:.0f} s")
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self.start(child)
        if not self.web_up and any(c.spec.name == "web" and c.proc is not None for c in self.children):
            self.web_up = _http_up(f"{URL}/healthz")
            if self.web_up:
                log(f"BotFactory is running at {URL}  (Ctrl-C to stop)")

    def stop(self, deadline: float, force: Callable[[], bool]) -> None:
        """SIGTERM every child's session, wait until `deadline` (or until `force()`), then SIGKILL what is left."""
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        while time.monotonic() < deadline and not force():
            if all(c.proc is None or c.proc.poll() is not None for c in self.children):
                break
            time.sleep(0.05)
        for child in self.children:
            if child.proc is None:
                continue
            # Also the grandchildren that outlived their parent or left its process group (same session).
            leftovers = _session_members(child.proc.pid, child.create_time)
            if child.proc.poll() is None:
                log(f"{child.spec.name} did not stop in time; killing it")
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=1.0)
        for child in self.children:
            for thread in child.threads:
                thread.join(timeout=0.5)
        STATE_FILE.unlink(missing_ok=True)


def _http_up(url: str) -> bool:
    """True once the server answers HTTP at all (a 404 still means it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def available_subcommands(env: dict[str, str]) -> set[str]:
    """The `botfactory` subcommands that exist today, read from argparse's ``{serve,db,...}`` usage line."""
    result = subprocess.run([*CLI, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    match = re.search(r"\{([a-z0-9_,-]+)\}", result.stdout)
    if result.returncode != 0 or not match:
        log(f"could not list botfactory subcommands:\n{result.stderr.strip()}")
        return set()
    return set(match.group(1).split(","))


def _port_owner(port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline())[:100]})"
    return "another process"


def run_step(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Run a one-off command in the foreground with prefixed output (migrations)."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        for raw in iter(proc.stdout.readline, b""):
            say(name, raw.decode("utf-8", errors="replace"), "90")
        return proc.wait()
    except BaseException:
        # Interrupted (Shutdown): do not leave a half-run migration behind us.
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        raise


# --------------------------------------------------------------------------------------------------------------
# Main


class Launcher:
    """One `make run`: lock, secrets, embedded servers, migrations, supervision, and the shutdown order."""

    def __init__(self) -> None:
        self.phase = "starting"  # starting -> running -> stopping
        self.signals = 0
        self.signalled_at = 0.0
        self.embedded_pg = False
        self.embedded_valkey = False
        self.supervisor: Supervisor | None = None

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            self.signalled_at = time.monotonic()
        if self.phase == "starting" and self.signals == 1:
            raise Shutdown(signal.Signals(signum).name)

    @contextlib.contextmanager
    def services(self, env: dict[str, str]) -> Iterator[None]:
        """The embedded servers for what DATABASE_URL / REDIS_URL leave unset, stopped again on the way out."""
        dotenv = _read_env_file(ROOT / ".env")
        try:
            if not configured(env, dotenv, "DATABASE_URL"):
                started = time.monotonic()
                self.embedded_pg = True
                env["DATABASE_URL"] = embedded.ensure_postgres(DATA / "pg")
                log(f"PostgreSQL (embedded, .data/pg) ready in {time.monotonic() - started:.2f} s")
            if not configured(env, dotenv, "REDIS_URL"):
                started = time.monotonic()
                port = int(env.get("EMBEDDED_VALKEY_PORT") or dotenv.get("EMBEDDED_VALKEY_PORT") or 6390)
                self.embedded_valkey = True
                env["REDIS_URL"] = embedded.ensure_valkey(DATA / "valkey", port)
                log(f"Valkey (embedded, .data/valkey, {env['REDIS_URL']}) ready in {time.monotonic() - started:.2f} s")
            yield
        finally:
            # No Shutdown may interrupt the teardown itself (a signal during a failed start-up).
            self.phase = "stopping"
            if self.embedded_valkey:
                embedded.stop_valkey(DATA / "valkey", timeout=VALKEY_STOP)
            if self.embedded_pg:
                embedded.stop_postgres(DATA / "pg", timeout=POSTGRES_STOP)

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        lock = acquire_lock()
        try:
            reap_orphans()
            env = build_env()
            with self.services(env):
                # Children stop inside this block, so the servers they use go last.
                try:
                    code = self._migrate_and_supervise(env)
                except Shutdown:
                    code = 0
                finally:
                    self._stop_children(time.monotonic())
            return code
        except Shutdown:
            return 0
        except embedded.EmbeddedServiceError as exc:
            log(str(exc))
            return 1
        finally:
            if self.signals:
                log(f"stopped in {time.monotonic() - self.signalled_at:.1f} s")
            lock.close()

    def _stop_children(self, since: float) -> None:
        self.phase = "stopping"
        if self.supervisor is not None:
            supervisor, self.supervisor = self.supervisor, None
            # A second Ctrl-C skips the grace period.
            supervisor.stop(since + CHILD_GRACE, force=lambda: self.signals > 1)

    def _migrate_and_supervise(self, env: dict[str, str]) -> int:
        subcommands = available_subcommands(env)
        if "db" in subcommands:
            code = run_step("migrate", [*CLI, "db", "upgrade"], env)
        elif (ROOT / "alembic.ini").exists():
            code = run_step("migrate", [PY, "-m", "alembic", "upgrade", "head"], env)
        else:
            code = 0
        if code != 0:
            log("migrations failed; not starting the app")
            return 1
        specs = [s for s in PROCESSES if s.subcommand is None or s.subcommand in subcommands]
        skipped = [s.name for s in PROCESSES if s not in specs]
        if skipped:
            log(f"not started (no such botfactory subcommand yet): {', '.join(skipped)}")
        owner = _port_owner(PORT)
        if owner is not None:
            log(f"{HOST}:{PORT} is already in use by {owner}; stop it or set PORT")
            return 1
        self.supervisor = Supervisor(specs, env)
        for child in self.supervisor.children:
            self.supervisor.start(child)
        self.phase = "running"
        log(f"started {', '.join(s.name for s in specs)}; waiting for {URL}")
        while self.signals == 0:
            self.supervisor.tick()
            time.sleep(0.2)
        log("stopping…")
        return 0


def main() -> int:
    return Launcher().run()


if __name__ == "__main__":
    sys.exit(main())
