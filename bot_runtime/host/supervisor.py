"""The host's own supervisord: generated config, process lifecycle, and a small XML-RPC client over its socket.

Only running tenants have a program file in ``conf.d`` (start: write file → ``botfactory.addProgramFile`` →
startProcess without waiting; stop: stopProcess → ``botfactory.forgetProgram`` → delete file), so supervisord stays
fast however many tenants exist. ``botfactory.*`` is our XML-RPC namespace inside supervisord
(:mod:`bot_runtime.host.supervisor_rpc`): it adds one program file without ``reloadConfig``, whose cost grows with
the square of the running programs. Programs never autorestart: the agent sees every exit and decides (restart, idle,
crash-looping). supervisord runs in its own session (a terminal's Ctrl-C reaches only the agent, which then stops
everything in order) and, on Linux, gets SIGTERM from the kernel when the agent dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults, SupervisorTransport, UnixStreamHTTPConnection

# sun_path is 108 bytes on Linux; a deeper state dir gets its socket under the temp dir instead.
_MAX_SOCKET_PATH = 100
_PR_SET_PDEATHSIG = 1
RPC_TIMEOUT = 10.0

RUNNING_STATES = frozenset({"STARTING", "RUNNING", "STOPPING"})


class SupervisorError(RuntimeError):
    """supervisord could not be started, reached or stopped."""


def program_name(tenant_id: str) -> str:
    return f"runtime-{tenant_id}"


def tenant_of(name: str) -> str | None:
    return name.removeprefix("runtime-") if name.startswith("runtime-") else None


def _ini_value(value: str) -> str:
    # supervisord expands %(name)s in values, so a literal % must be doubled.
    return value.replace("%", "%%")


def _env_value(value: str) -> str:
    return '"' + _ini_value(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exit_with_parent() -> Callable[[], None] | None:
    """preexec_fn: the kernel sends SIGTERM to the child when this process dies (Linux, main thread only)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text()
        return status.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_rss_bytes(pid: int) -> int:
    """VmRSS of a process in bytes (0 when it is gone)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _UnixConnection(UnixStreamHTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(RPC_TIMEOUT)
        self.sock.connect(self.socketfile)


class _Transport(SupervisorTransport):
    """SupervisorTransport with a socket timeout, so a wedged supervisord cannot hang the agent forever."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(None, None, f"unix://{socket_path}")

        def get_connection() -> _UnixConnection:
            conn = _UnixConnection("localhost")
            conn.socketfile = socket_path
            return conn

        self._get_connection = get_connection


class Supervisord:
    """One supervisord per host agent, configured and owned entirely from ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        identifier: str,
        python: str,
        project_root: Path,
        environment: dict[str, str],
        inet_port: int | None = None,
        minfds: int = 1024,
        log_maxbytes: str = "512KB",
    ) -> None:
        self.state_dir = state_dir
        self.identifier = identifier
        self.python = python
        self.project_root = project_root
        self.environment = environment
        self.inet_port = inet_port
        self.minfds = minfds
        self.log_maxbytes = log_maxbytes
        self.conf_path = state_dir / "supervisord.conf"
        self.conf_dir = state_dir / "conf.d"
        self.log_dir = state_dir / "logs"
        self.pidfile = state_dir / "supervisord.pid"
        socket_path = state_dir / "supervisor.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"bf-supervisor-{digest}.sock"
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None
        # One XML-RPC connection per thread: the agent calls from its loop and from its supervisord worker thread.
        self._local = threading.local()

    # -- files ------------------------------------------------------------------------------------------------

    def _binary(self) -> list[str]:
        candidate = Path(self.python).parent / "supervisord"
        if candidate.exists():
            return [str(candidate)]
        return [self.python, "-m", "supervisor.supervisord"]

    def write_main_config(self) -> None:
        for directory in (self.state_dir, self.conf_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        inet = f"[inet_http_server]\nport=127.0.0.1:{self.inet_port}\n\n" if self.inet_port else ""
        text = (
            f"[unix_http_server]\nfile={_ini_value(str(self.socket_path))}\nchmod=0700\n\n"
            f"{inet}"
            "[supervisord]\n"
            "nodaemon=true\n"
            "silent=true\n"
            f"logfile={_ini_value(str(self.state_dir / 'supervisord.log'))}\n"
            "logfile_maxbytes=1MB\nlogfile_backups=1\nloglevel=warn\n"
            f"pidfile={_ini_value(str(self.pidfile))}\n"
            f"childlogdir={_ini_value(str(self.log_dir))}\n"
            f"identifier={_ini_value(self.identifier)}\n"
            f"minfds={self.minfds}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            "[rpcinterface:botfactory]\n"
            "supervisor.rpcinterface_factory = bot_runtime.host.supervisor_rpc:make_interface\n\n"
            f"[supervisorctl]\nserverurl=unix://{_ini_value(str(self.socket_path))}\n\n"
            f"[include]\nfiles={_ini_value(str(self.conf_dir))}/*.conf\n"
        )
        self.conf_path.write_text(text)

    def program_file(self, tenant_id: str) -> Path:
        return self.conf_dir / f"{program_name(tenant_id)}.conf"

    def log_file(self, tenant_id: str, stream: str = "stderr") -> Path:
        suffix = "err" if stream == "stderr" else "out"
        return self.log_dir / f"{program_name(tenant_id)}.{suffix}.log"

    def write_program(self, tenant_id: str, environment: dict[str, str]) -> None:
        """The program section of one tenant; per-tenant values only (the rest comes from supervisord's env)."""
        name = program_name(tenant_id)
        env = ",".join(f"{key}={_env_value(value)}" for key, value in environment.items())
        text = (
            f"[program:{name}]\n"
            f"command={_ini_value(self.python)} -m bot_runtime --tenant {tenant_id}\n"
            f"directory={_ini_value(str(self.project_root))}\n"
            "autostart=false\nautorestart=false\nstartsecs=0\nstartretries=0\n"
            "stopsignal=TERM\nstopwaitsecs=5\nstopasgroup=true\nkillasgroup=true\n"
            f"stdout_logfile={_ini_value(str(self.log_file(tenant_id, 'stdout')))}\n"
            f"stdout_logfile_maxbytes={self.log_maxbytes}\nstdout_logfile_backups=1\n"
            f"stderr_logfile={_ini_value(str(self.log_file(tenant_id, 'stderr')))}\n"
            f"stderr_logfile_maxbytes={self.log_maxbytes}\nstderr_logfile_backups=1\n"
            f"environment={env}\n"
        )
        path = self.program_file(tenant_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def delete_program(self, tenant_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.program_file(tenant_id).unlink()

    def clear_programs(self) -> None:
        if self.conf_dir.exists():
            for path in self.conf_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- process ----------------------------------------------------------------------------------------------

    def _pid_from_file(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text().strip())
        return None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else self._pid_from_file()

    def stop_stale(self, timeout: float = 10.0) -> None:
        """Stop a supervisord a previous agent on this state dir left behind (it was killed with -9)."""
        pid = self._pid_from_file()
        if pid is None or not pid_alive(pid):
            return
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "supervisord" not in cmdline or str(self.conf_path) not in cmdline:
                return  # the pid was recycled by an unrelated process
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def start(self, timeout: float = 10.0) -> None:
        self.stop_stale()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.clear_programs()
        self.write_main_config()
        output = open(self.state_dir / "supervisord.out", "ab")  # the child inherits it
        try:
            # supervisord imports our rpcinterface (bot_runtime.host.supervisor_rpc) from the project.
            pythonpath = os.pathsep.join(filter(None, [str(self.project_root), self.environment.get("PYTHONPATH")]))
            self.process = subprocess.Popen(
                [*self._binary(), "-c", str(self.conf_path)],
                env={**self.environment, "PYTHONPATH": pythonpath},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=str(self.project_root),
                start_new_session=True,
                preexec_fn=_exit_with_parent(),  # PDEATHSIG is per thread: main thread only
            )
        finally:
            output.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SupervisorError(f"supervisord exited with {self.process.returncode}; see {self.state_dir}")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if self.rpc("getState")["statename"] == "RUNNING":
                    return
            if time.monotonic() > deadline:
                raise SupervisorError(f"supervisord did not answer on {self.socket_path} within {timeout} s")
            time.sleep(0.02)

    def shutdown(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc("shutdown")
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._close()

    # -- XML-RPC ----------------------------------------------------------------------------------------------

    def _close(self) -> None:
        proxy = getattr(self._local, "proxy", None)
        if proxy is not None:
            with contextlib.suppress(Exception):
                proxy("close")()
        self._local.proxy = None

    def rpc(self, method: str, *args: Any, namespace: str = "supervisor") -> Any:
        """Call ``<namespace>.<method>``; a broken connection is dropped so the next call reconnects.

        Safe from several threads: each thread has its own connection.
        """
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=_Transport(str(self.socket_path)))
            self._local.proxy = proxy
        try:
            return getattr(getattr(proxy, namespace), method)(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, xmlrpc.client.ProtocolError):
            self._close()
            raise

    def add_program(self, tenant_id: str) -> None:
        """Make the tenant's program file known and add its group, parsing only that file (not reloadConfig)."""
        try:
            self.rpc("addProgramFile", str(self.program_file(tenant_id)), namespace="botfactory")
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_ADDED:
                raise

    def start_process(self, name: str) -> None:
        """startProcess without waiting on startsecs: the runtime reports readiness in Redis itself."""
        try:
            self.rpc("startProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_STARTED:
                raise

    def stop_process(self, name: str) -> None:
        """Send the stop signal and return; supervisord kills it after stopwaitsecs if it does not exit."""
        try:
            self.rpc("stopProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (Faults.NOT_RUNNING, Faults.BAD_NAME):
                raise

    def remove_program(self, tenant_id: str) -> bool:
        """Remove the group and its config, and delete the file; False while the process is still running."""
        try:
            self.rpc("forgetProgram", program_name(tenant_id), namespace="botfactory")
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.STILL_RUNNING:
                return False
            raise
        self.delete_program(tenant_id)
        return True

    def all_info(self) -> dict[str, dict[str, Any]]:
        return {info["name"]: info for info in self.rpc("getAllProcessInfo")}
