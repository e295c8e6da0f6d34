"""A small asyncio Redis client (RESP2) for the tenant runtime: the commands it uses, with redis-py's result shapes.

Why not redis-py: every tenant is its own process, so per-process memory is the product's density. redis-py 8 pulls in
about 90 modules (its command mixins, OpenTelemetry, importlib.metadata) and costs a runtime ~7 MiB of its ~60; this
module costs well under 1 MiB. It speaks only what the runtime needs: plain commands over a small connection pool,
pipelines (MULTI/EXEC or not), EVAL, streams with consumer groups, and pub/sub. Results have redis-py's shapes
(``xreadgroup`` → ``[[stream, [(id, fields)]]]``, ``xpending`` → a dict, ``set`` → True/None ...), so the code it
serves also runs with a redis-py client: the control plane and the host agent pass theirs to the same helpers, and
``tests/bot_runtime/test_resp.py`` checks every command against redis-py on a real server.

Failure rules. A reply that does not arrive within ``socket_timeout`` (plus a blocking command's own BLOCK time)
raises TimeoutError, and a cancelled or failed request closes its connection rather than returning it to the pool,
since its reply would otherwise be read by the next command. A command is retried once on a fresh connection only
when writing it to a pooled connection failed, i.e. when the server cannot have seen it, so nothing runs twice.
Connections idle longer than ``health_check_interval`` are replaced instead of being trusted.

Errors: ``redis_errors()`` gives the exception classes to catch for code that may hold either client.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Callback = Callable[[Any], Any]
_BuiltinTimeout = builtins.TimeoutError  # what asyncio.timeout raises; this module's TimeoutError is a RedisError
Entry = tuple[Any, dict[Any, Any] | None]


class RedisError(Exception):
    """Base of this client's errors (``redis_errors()`` adds redis-py's when it is loaded)."""


class ConnectionError(RedisError):
    """The connection failed or was closed while a command was outstanding."""


class TimeoutError(RedisError):
    """No reply within socket_timeout."""


class ResponseError(RedisError):
    """The server answered with an error reply (``-ERR ...``); ``status_code`` is its code when redis-py strips it."""

    def __init__(self, message: str, status_code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


# redis-py drops these codes from the message (``-ERR unknown command`` → "unknown command") and keeps the others
# (WRONGTYPE, BUSYGROUP ...), which callers match on; the same here, so messages read alike with either client.
_STRIPPED_CODES = frozenset(
    "ERR OOM WRONGPASS EXECABORT LOADING NOSCRIPT READONLY NOAUTH NOPERM ASK TRYAGAIN MOVED CLUSTERDOWN CROSSSLOT "
    "MASTERDOWN".split()
)


def _error(message: str) -> ResponseError:
    code = message.split(" ", 1)[0]
    if code in _STRIPPED_CODES:
        return ResponseError(message[len(code) + 1 :], status_code=code)
    return ResponseError(message)


class InvalidResponse(RedisError):
    """The server sent something that is not RESP2."""


def redis_errors(kind: str = "RedisError") -> tuple[type[BaseException], ...]:
    """This client's ``kind`` error class plus redis-py's of the same name if redis-py is loaded.

    Meant for ``except redis_errors():`` clauses, which Python evaluates only when an exception arrives, so code
    shared with the control plane catches the errors of whichever client it was given without importing redis-py.
    """
    ours: type[BaseException] = globals()[kind]
    theirs = sys.modules.get("redis.exceptions")
    if theirs is None:
        return (ours,)
    return (ours, getattr(theirs, kind))


# -- wire format ----------------------------------------------------------------------------------------------


def _encode_arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):  # a bool is an int; redis-py refuses it too, since "True" is rarely what was meant
        raise RedisError(f"invalid argument {value!r}: convert booleans to str or int first")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, memoryview):
        return bytes(value)
    raise RedisError(f"invalid argument type {type(value).__name__}")


def pack_command(args: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode_arg(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


async def read_reply(reader: asyncio.StreamReader, decode: bool) -> Any:
    """One RESP2 reply. Error replies are returned as ResponseError instances (pipelines hold them per command)."""
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = (await reader.readexactly(size + 2))[:-2]
        return data.decode() if decode else data
    if kind == b"*":
        size = int(rest)
        if size < 0:
            return None
        return [await read_reply(reader, decode) for _ in range(size)]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest.decode() if decode else rest
    if kind == b"-":
        return _error(rest.decode(errors="replace"))
    raise InvalidResponse(f"unexpected reply type {kind!r}")


# -- result shapes (redis-py's RESP2 callbacks) ---------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ok(reply: Any) -> bool | None:
    return True if reply is not None and _text(reply) == "OK" else None


def _pairs(reply: Sequence[Any] | None) -> dict[Any, Any]:
    if not reply:
        return {}
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _entries(reply: Iterable[Any] | None) -> list[Entry]:
    return [(row[0], _pairs(row[1]) if row[1] is not None else None) for row in reply or ()]


def _xread(reply: Any) -> Any:
    if reply is None:
        return []
    return [[stream, _entries(rows)] for stream, rows in reply]


def _xautoclaim(reply: Any) -> list[Any]:
    # Redis 7 adds a third element (ids deleted meanwhile); redis-py passes it through.
    return [reply[0], _entries(reply[1]), *reply[2:]]


def _xpending(reply: Any) -> dict[str, Any]:
    return {
        "pending": reply[0],
        "min": reply[1],
        "max": reply[2],
        "consumers": [{"name": name, "pending": int(count)} for name, count in reply[3] or ()],
    }


def _xpending_range(reply: Any) -> list[dict[str, Any]]:
    keys = ("message_id", "consumer", "time_since_delivered", "times_delivered")
    return [dict(zip(keys, row, strict=True)) for row in reply]


def _key_text_pairs(reply: Any) -> dict[str, Any]:
    return {_text(key): value for key, value in _pairs(reply).items()}


def _info_rows(reply: Any) -> list[dict[str, Any]]:
    return [_key_text_pairs(row) for row in reply]


# -- commands -------------------------------------------------------------------------------------------------


class Commands:
    """The command methods; ``_run`` makes them coroutines on a client and chainable calls on a pipeline."""

    def _run(self, args: list[Any], callback: Callback | None = None, *, block_ms: int | None = None) -> Any:
        raise NotImplementedError

    def ping(self) -> Any:
        return self._run(["PING"], lambda reply: _text(reply) == "PONG")

    def get(self, name: str) -> Any:
        return self._run(["GET", name])

    def set(
        self,
        name: str,
        value: Any,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
    ) -> Any:
        args: list[Any] = ["SET", name, value]
        if ex is not None:
            args += ["EX", ex]
        if px is not None:
            args += ["PX", px]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        if keepttl:
            args.append("KEEPTTL")
        return self._run(args, _ok)

    def delete(self, *names: str) -> Any:
        return self._run(["DEL", *names])

    def exists(self, *names: str) -> Any:
        return self._run(["EXISTS", *names])

    def _expire(self, command: str, name: str, time_: int, nx: bool, xx: bool, gt: bool, lt: bool) -> Any:
        flags = [flag for flag, on in (("NX", nx), ("XX", xx), ("GT", gt), ("LT", lt)) if on]
        return self._run([command, name, time_, *flags], bool)

    def expire(
        self, name: str, time: int, nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Any:
        return self._expire("EXPIRE", name, time, nx, xx, gt, lt)

    def pexpire(
        self, name: str, time: int, nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Any:
        return self._expire("PEXPIRE", name, time, nx, xx, gt, lt)

    def ttl(self, name: str) -> Any:
        return self._run(["TTL", name])

    def incr(self, name: str, amount: int = 1) -> Any:
        return self._run(["INCRBY", name, amount])

    def hset(
        self, name: str, key: str | None = None, value: Any = None, mapping: Mapping[str, Any] | None = None
    ) -> Any:
        args: list[Any] = ["HSET", name]
        if key is not None:
            args += [key, value]
        for field, field_value in (mapping or {}).items():
            args += [field, field_value]
        if len(args) == 2:
            raise RedisError("hset needs key/value or mapping")
        return self._run(args)

    def hget(self, name: str, key: str) -> Any:
        return self._run(["HGET", name, key])

    def hgetall(self, name: str) -> Any:
        return self._run(["HGETALL", name], _pairs)

    def sadd(self, name: str, *values: Any) -> Any:
        return self._run(["SADD", name, *values])

    def srem(self, name: str, *values: Any) -> Any:
        return self._run(["SREM", name, *values])

    def smembers(self, name: str) -> Any:
        return self._run(["SMEMBERS", name], lambda reply: set(reply or ()))

    def sismember(self, name: str, value: Any) -> Any:
        return self._run(["SISMEMBER", name, value], bool)

    def publish(self, channel: str, message: Any) -> Any:
        return self._run(["PUBLISH", channel, message])

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self._run(["EVAL", script, numkeys, *keys_and_args])

    # streams

    def xadd(
        self,
        name: str,
        fields: Mapping[Any, Any],
        id: str = "*",
        maxlen: int | None = None,
        approximate: bool = True,
        nomkstream: bool = False,
    ) -> Any:
        if not fields:
            raise RedisError("xadd needs at least one field")
        args: list[Any] = ["XADD", name]
        if nomkstream:
            args.append("NOMKSTREAM")
        if maxlen is not None:
            args += ["MAXLEN", "~", maxlen] if approximate else ["MAXLEN", maxlen]
        args.append(id)
        for field, value in fields.items():
            args += [field, value]
        return self._run(args)

    def xack(self, name: str, groupname: str, *ids: str) -> Any:
        return self._run(["XACK", name, groupname, *ids])

    def xreadgroup(
        self,
        groupname: str,
        consumername: str,
        streams: Mapping[str, str],
        count: int | None = None,
        block: int | None = None,
        noack: bool = False,
    ) -> Any:
        args: list[Any] = ["XREADGROUP", "GROUP", groupname, consumername]
        if count is not None:
            args += ["COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        if noack:
            args.append("NOACK")
        args += ["STREAMS", *streams.keys(), *streams.values()]
        return self._run(args, _xread, block_ms=block)

    def xautoclaim(
        self,
        name: str,
        groupname: str,
        consumername: str,
        min_idle_time: int,
        start_id: str = "0-0",
        count: int | None = None,
        justid: bool = False,
    ) -> Any:
        args: list[Any] = ["XAUTOCLAIM", name, groupname, consumername, min_idle_time, start_id]
        if count is not None:
            args += ["COUNT", count]
        if justid:
            args.append("JUSTID")
            return self._run(args, lambda reply: reply[1])
        return self._run(args, _xautoclaim)

    def xclaim(
        self,
        name: str,
        groupname: str,
        consumername: str,
        min_idle_time: int,
        message_ids: Sequence[str],
        justid: bool = False,
    ) -> Any:
        args: list[Any] = ["XCLAIM", name, groupname, consumername, min_idle_time, *message_ids]
        if justid:
            args.append("JUSTID")
            return self._run(args, list)
        return self._run(args, _entries)

    def xpending(self, name: str, groupname: str) -> Any:
        return self._run(["XPENDING", name, groupname], _xpending)

    def xpending_range(
        self,
        name: str,
        groupname: str,
        min: str,
        max: str,
        count: int,
        consumername: str | None = None,
        idle: int | None = None,
    ) -> Any:
        args: list[Any] = ["XPENDING", name, groupname]
        if idle is not None:
            args += ["IDLE", idle]
        args += [min, max, count]
        if consumername is not None:
            args.append(consumername)
        return self._run(args, _xpending_range)

    def xinfo_consumers(self, name: str, groupname: str) -> Any:
        return self._run(["XINFO", "CONSUMERS", name, groupname], _info_rows)

    def xgroup_create(self, name: str, groupname: str, id: str = "$", mkstream: bool = False) -> Any:
        args: list[Any] = ["XGROUP", "CREATE", name, groupname, id]
        if mkstream:
            args.append("MKSTREAM")
        return self._run(args, lambda reply: _ok(reply) is True)

    def xgroup_delconsumer(self, name: str, groupname: str, consumername: str) -> Any:
        return self._run(["XGROUP", "DELCONSUMER", name, groupname, consumername])

    def xrange(self, name: str, min: str = "-", max: str = "+", count: int | None = None) -> Any:
        args: list[Any] = ["XRANGE", name, min, max]
        if count is not None:
            args += ["COUNT", count]
        return self._run(args, _entries)

    def xrevrange(self, name: str, max: str = "+", min: str = "-", count: int | None = None) -> Any:
        args: list[Any] = ["XREVRANGE", name, max, min]
        if count is not None:
            args += ["COUNT", count]
        return self._run(args, _entries)

    def xlen(self, name: str) -> Any:
        return self._run(["XLEN", name])


# -- connections ----------------------------------------------------------------------------------------------


class _Options:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        ssl_cert_reqs: str = "required",
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
        health_check_interval: float = 0,
        client_name: str | None = None,
    ) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password = username, password
        self.ssl, self.ssl_cert_reqs = ssl, ssl_cert_reqs
        self.socket_timeout, self.socket_connect_timeout = socket_timeout, socket_connect_timeout
        self.health_check_interval = health_check_interval
        self.client_name = client_name


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, options: _Options) -> _Connection:
        try:
            async with asyncio.timeout(options.socket_connect_timeout):
                if options.path:
                    reader, writer = await asyncio.open_unix_connection(options.path)
                else:
                    context = None
                    if options.ssl:
                        import ssl

                        context = ssl.create_default_context()
                        if options.ssl_cert_reqs == "none":
                            context.check_hostname = False
                            context.verify_mode = ssl.CERT_NONE
                    reader, writer = await asyncio.open_connection(options.host, options.port, ssl=context)
        except _BuiltinTimeout as exc:
            raise TimeoutError(f"connecting to Redis timed out after {options.socket_connect_timeout} s") from exc
        except OSError as exc:
            raise ConnectionError(f"cannot connect to Redis: {exc}") from exc
        connection = cls(reader, writer)
        hello: list[list[Any]] = []
        if options.password is not None:
            hello.append(
                ["AUTH", options.username, options.password] if options.username else ["AUTH", options.password]
            )
        if options.db:
            hello.append(["SELECT", options.db])
        if options.client_name:
            hello.append(["CLIENT", "SETNAME", options.client_name])
        if hello:
            try:
                await connection.send(b"".join(pack_command(args) for args in hello))
                replies = await connection.receive(len(hello), True, options.socket_timeout)
            except BaseException:
                connection.close()
                raise
            for reply in replies:
                if isinstance(reply, ResponseError):
                    connection.close()
                    raise reply
        return connection

    async def send(self, payload: bytes) -> None:
        self.writer.write(payload)
        await self.writer.drain()

    async def receive(self, replies: int, decode: bool, timeout: float | None) -> list[Any]:  # noqa: ASYNC109
        """Read ``replies`` replies. On any failure the caller must close the connection (its state is unknown)."""
        try:
            async with asyncio.timeout(timeout):
                results = [await read_reply(self.reader, decode) for _ in range(replies)]
        except _BuiltinTimeout as exc:
            raise TimeoutError(f"no reply from Redis within {timeout} s") from exc
        except asyncio.IncompleteReadError as exc:
            raise ConnectionError("connection closed by the server") from exc
        self.last_used = time.monotonic()
        return results

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Redis(Commands):
    """A connection pool and the command methods (coroutines, as in ``redis.asyncio.Redis``)."""

    def __init__(self, *, decode_responses: bool = False, max_idle_connections: int = 8, **options: Any) -> None:
        self.decode_responses = decode_responses
        self._options = _Options(**options)
        self._idle: list[_Connection] = []
        self._max_idle = max_idle_connections
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Redis:
        """redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path[?db=N]."""
        parts = urlsplit(url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        options: dict[str, Any] = {}
        if parts.scheme == "unix":
            options["path"] = unquote(parts.path)
        elif parts.scheme in ("redis", "rediss", "valkey", "valkeys"):
            options["host"] = parts.hostname or "127.0.0.1"
            options["port"] = parts.port or 6379
            options["ssl"] = parts.scheme in ("rediss", "valkeys")
            path_db = parts.path.lstrip("/")
            if path_db:
                options["db"] = int(path_db)
        else:
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
        if parts.username:
            options["username"] = unquote(parts.username)
        if parts.password is not None:
            options["password"] = unquote(parts.password)
        if "db" in query:
            options["db"] = int(query["db"])
        if "ssl_cert_reqs" in query:
            options["ssl_cert_reqs"] = query["ssl_cert_reqs"].lower()
        options.update(kwargs)
        return cls(**options)

    # -- pool ---------------------------------------------------------------------------------------------------

    async def _acquire(self) -> tuple[_Connection, bool]:
        """(connection, reused): idle ones past the health-check interval are closed rather than trusted."""
        if self._closed:
            raise ConnectionError("client is closed")
        interval = self._options.health_check_interval
        while self._idle:
            connection = self._idle.pop()
            # A connection the server closed while it sat here shows EOF already (the loop saw the FIN).
            stale = connection.reader.at_eof() or connection.writer.is_closing()
            if stale or (interval and time.monotonic() - connection.last_used > interval):
                connection.close()
                continue
            return connection, True
        return await _Connection.open(self._options), False

    def _release(self, connection: _Connection) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            connection.close()
        else:
            self._idle.append(connection)

    async def _exchange(self, payload: bytes, replies: int, block_ms: int | None = None) -> list[Any]:
        timeout = self._options.socket_timeout
        if timeout is not None and block_ms:
            timeout += block_ms / 1000
        for attempt in (1, 2):
            connection, reused = await self._acquire()
            try:
                await connection.send(payload)
            except (OSError, RuntimeError) as exc:
                connection.close()
                # Nothing reached the server on a broken pooled connection: one more try on a fresh one is safe.
                if reused and attempt == 1:
                    continue
                raise ConnectionError(f"writing to Redis failed: {exc}") from exc
            try:
                results = await connection.receive(replies, self.decode_responses, timeout)
            except BaseException as exc:
                connection.close()
                if isinstance(exc, OSError) and not isinstance(exc, RedisError):
                    raise ConnectionError(f"reading from Redis failed: {exc}") from exc
                raise
            self._release(connection)
            return results
        raise ConnectionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _call(self, args: list[Any], callback: Callback | None, block_ms: int | None) -> Any:
        (reply,) = await self._exchange(pack_command(args), 1, block_ms)
        if isinstance(reply, ResponseError):
            raise reply
        return callback(reply) if callback is not None else reply

    def _run(self, args: list[Any], callback: Callback | None = None, *, block_ms: int | None = None) -> Awaitable[Any]:
        return self._call(args, callback, block_ms)

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline(self, transaction)

    def pubsub(self, ignore_subscribe_messages: bool = False) -> PubSub:
        return PubSub(self, ignore_subscribe_messages)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def __aenter__(self) -> Redis:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Pipeline(Commands):
    """Queued commands sent in one write; with ``transaction`` wrapped in MULTI/EXEC. redis-py's interface."""

    def __init__(self, client: Redis, transaction: bool) -> None:
        self._client = client
        self._transaction = transaction
        self._queue: list[tuple[list[Any], Callback | None]] = []

    def _run(self, args: list[Any], callback: Callback | None = None, *, block_ms: int | None = None) -> Pipeline:
        self._queue.append((args, callback))
        return self

    def __len__(self) -> int:
        return len(self._queue)

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue.clear()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        queue, self._queue = self._queue, []
        if not queue:
            return []
        commands = [args for args, _ in queue]
        if self._transaction:
            commands = [["MULTI"], *commands, ["EXEC"]]
        replies = await self._client._exchange(b"".join(pack_command(args) for args in commands), len(commands))
        if self._transaction:
            queued, replies = replies[1:-1], replies[-1]
            if isinstance(replies, ResponseError):  # EXECABORT: report the command that was refused
                raise next((reply for reply in queued if isinstance(reply, ResponseError)), replies)
            if replies is None:
                raise RedisError("transaction aborted")
        results: list[Any] = []
        for (_, callback), reply in zip(queue, replies, strict=True):
            if isinstance(reply, ResponseError):
                if raise_on_error:
                    raise reply
                results.append(reply)
            else:
                results.append(callback(reply) if callback is not None else reply)
        return results


class PubSub:
    """Subscriptions on a connection of their own; a reader task queues messages for ``get_message``."""

    def __init__(self, client: Redis, ignore_subscribe_messages: bool) -> None:
        self._client = client
        self._ignore = ignore_subscribe_messages
        self._connection: _Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._messages: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self.channels: set[str] = set()

    async def subscribe(self, *channels: str) -> None:
        if self._connection is None:
            self._connection = await _Connection.open(self._client._options)
            self._reader = asyncio.create_task(self._read_loop(self._connection), name="redis-pubsub")
        await self._connection.send(pack_command(["SUBSCRIBE", *channels]))
        self.channels.update(channels)

    async def unsubscribe(self, *channels: str) -> None:
        if self._connection is not None:
            await self._connection.send(pack_command(["UNSUBSCRIBE", *channels]))
        self.channels.difference_update(channels or set(self.channels))

    async def _read_loop(self, connection: _Connection) -> None:
        decode = self._client.decode_responses
        try:
            while True:
                reply = await read_reply(connection.reader, decode)
                if not isinstance(reply, list) or len(reply) < 3:
                    continue
                kind = _text(reply[0])
                if kind == "pmessage":
                    message = {"type": kind, "pattern": reply[1], "channel": reply[2], "data": reply[3]}
                else:
                    message = {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2]}
                if self._ignore and kind in ("subscribe", "unsubscribe", "psubscribe", "punsubscribe"):
                    continue
                self._messages.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by the next get_message, like redis-py's read errors
            self._messages.put_nowait(
                exc if isinstance(exc, RedisError) else ConnectionError(f"pub/sub connection lost: {exc!r}")
            )

    async def get_message(
        self,
        ignore_subscribe_messages: bool = False,
        timeout: float | None = 0.0,  # noqa: ASYNC109 - redis-py's signature
    ) -> Any:
        """The next message, or None when none arrives within ``timeout`` seconds (None = wait for one)."""
        if self._connection is None and self._messages.empty():
            if timeout:
                await asyncio.sleep(timeout)
            return None
        while True:
            try:
                if timeout == 0:
                    item = self._messages.get_nowait()
                else:
                    item = await asyncio.wait_for(self._messages.get(), timeout)
            except (asyncio.QueueEmpty, _BuiltinTimeout):
                return None
            if isinstance(item, BaseException):
                await self.reset()
                raise item
            if ignore_subscribe_messages and item["type"] in ("subscribe", "unsubscribe"):
                continue
            return item

    async def reset(self) -> None:
        reader, connection = self._reader, self._connection
        self._reader = self._connection = None
        self.channels.clear()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        if connection is not None:
            connection.close()
        self._messages = asyncio.Queue()

    async def aclose(self) -> None:
        await self.reset()
