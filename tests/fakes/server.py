"""Run any ASGI app with uvicorn on 127.0.0.1 in a background thread, for tests that need a real HTTP server.

Our client libraries (python-telegram-bot, google-genai, openai, stripe) each bring their own HTTP stack, so the fakes
must listen on a real socket rather than be mounted through an in-process transport.

    with FakeServer(app) as server:
        httpx.get(f"{server.base_url}/health")

The server owns its own event loop in its own thread, so it keeps answering while a test blocks or runs a different
loop (pytest-asyncio gives every test a fresh one).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

__all__ = ["FakeServer"]


class FakeServer:
    """An ASGI app served on a free loopback port until :meth:`stop` (or the end of the ``with`` block)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 5.0,
        graceful_timeout: int = 3,
    ) -> None:
        """Prepare (not start) a server; ``port=0`` lets the kernel pick a free port.

        ``graceful_timeout`` bounds how long :meth:`stop` lets in-flight requests finish; it is longer than the fakes'
        longest server-side wait (a 2 s getUpdates long poll) so a poll in flight ends normally.
        """
        self.app = app
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            loop="asyncio",
            # log_config=None keeps uvicorn from calling dictConfig, which would rewire the test run's logging.
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_timeout,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only valid while the server runs."""
        if self._port is None:
            raise RuntimeError("FakeServer is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Bind, start serving in a daemon thread and return once uvicorn accepts connections."""
        if self.running:
            raise RuntimeError("FakeServer already started")
        # Binding here (not inside uvicorn) tells us the port before the thread starts and avoids the race of
        # "pick a free port, release it, hope nobody takes it".
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
        # response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(self._config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-server-{self._port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                self._port = None
                raise RuntimeError(f"FakeServer for {self.app!r} failed to start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), and join the thread. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=(self._config.timeout_graceful_shutdown or 0) + 2)
        if thread.is_alive():
            # A handler ignored the graceful window; skip the rest of uvicorn's shutdown rather than hang the run.
            server.force_exit = True
            thread.join(timeout=2)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "stopped"
        return f"<FakeServer {where} app={self.app!r}>"
