"""The runtime's own Redis client (bot_runtime/resp.py) against redis-py, on the real Redis server.

The runtime code is shared with the control plane and the host agent, which hand it redis-py clients, so the lean
client must give the same results: every command the runtime uses runs through both clients on twin keys and the
results are compared (stream ids are given explicitly so they match; idle times are left out). Then what a
hand-written client can get wrong: pipelines and their errors, pub/sub, a cancelled blocking read (its late reply
must never reach the next command), a connection the server killed while it sat in the pool, a server that never
answers, AUTH and SELECT from the URL, and that a runtime process never imports redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis as PyRedis
from redis.exceptions import ResponseError as PyResponseError

from bot_runtime import resp

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("REDIS_KEY_PREFIX", "bft:")


@pytest.fixture(params=[True, False], ids=["decoded", "bytes"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PyRedis, resp.Redis]]:
    decode = bool(request.param)
    py = PyRedis.from_url(URL, decode_responses=decode)
    lean = resp.Redis.from_url(URL, decode_responses=decode, socket_timeout=5)
    try:
        yield py, lean
    finally:
        await py.aclose()
        await lean.aclose()


Step = Callable[[Any, Callable[[str], str]], Any]


async def _outcome(step: Step, client: Any, key: Callable[[str], str]) -> Any:
    """What a step returned, or the error it raised (type name + message), with twin key names made equal."""
    try:
        result = step(client, key)
        if asyncio.iscoroutine(result):
            result = await result
    except (resp.ResponseError, PyResponseError) as exc:
        return ("error", str(exc).replace(key(""), "K:"))
    return _normalise(result, key(""))


def _normalise(value: Any, key_prefix: str) -> Any:
    if isinstance(value, bytes):
        return value.replace(key_prefix.encode(), b"K:")
    if isinstance(value, str):
        return value.replace(key_prefix, "K:")
    if isinstance(value, dict):
        return {_normalise(k, key_prefix): _normalise(v, key_prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_normalise(v, key_prefix) for v in value)
    if isinstance(value, set):
        return {_normalise(v, key_prefix) for v in value}
    return value


def _without(*names: str) -> Callable[[Any], Any]:
    """Drop time-dependent fields (idle, inactive, time_since_delivered) from a list of dicts."""

    def strip(rows: Any) -> Any:
        return [{k: v for k, v in row.items() if k not in names} for row in rows]

    return strip


SCRIPT = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1, redis.call('EXISTS', KEYS[1])}"

# (label, step, post-processing). Steps run in order on both clients, each on its own twin keys.
STEPS: list[tuple[str, Step, Callable[[Any], Any] | None]] = [
    ("set", lambda r, k: r.set(k("s"), "v1"), None),
    ("set nx taken", lambda r, k: r.set(k("s"), "v2", nx=True), None),
    ("set ex", lambda r, k: r.set(k("s2"), "v", ex=100), None),
    ("set px nx", lambda r, k: r.set(k("s3"), 7, px=100_000, nx=True), None),
    ("get", lambda r, k: r.get(k("s")), None),
    ("get int", lambda r, k: r.get(k("s3")), None),
    ("get missing", lambda r, k: r.get(k("nope")), None),
    ("exists", lambda r, k: r.exists(k("s"), k("nope"), k("s2")), None),
    ("expire", lambda r, k: r.expire(k("s"), 100), None),
    ("expire nx has ttl", lambda r, k: r.expire(k("s"), 100, nx=True), None),
    ("expire missing", lambda r, k: r.expire(k("nope"), 100), None),
    ("pexpire", lambda r, k: r.pexpire(k("s2"), 50_000), None),
    ("incr", lambda r, k: r.incr(k("n")), None),
    ("incr by", lambda r, k: r.incr(k("n"), 5), None),
    ("incr wrong type", lambda r, k: r.incr(k("s")), None),
    ("hset mapping", lambda r, k: r.hset(k("h"), mapping={"pid": 12, "host": "h1", "f": 1.5}), None),
    ("hset key", lambda r, k: r.hset(k("h"), "extra", "x"), None),
    ("hget", lambda r, k: r.hget(k("h"), "pid"), None),
    ("hgetall", lambda r, k: r.hgetall(k("h")), None),
    ("get wrong type", lambda r, k: r.get(k("h")), None),
    ("sadd", lambda r, k: r.sadd(k("set"), "a", "b", "c"), None),
    ("smembers", lambda r, k: r.smembers(k("set")), None),
    ("sismember yes", lambda r, k: r.sismember(k("set"), "a"), None),
    ("sismember no", lambda r, k: r.sismember(k("set"), "z"), None),
    ("srem", lambda r, k: r.srem(k("set"), "a", "z"), None),
    ("publish", lambda r, k: r.publish(k("channel"), "hello"), None),
    ("eval", lambda r, k: r.eval(SCRIPT, 1, k("s"), "arg", 41), None),
    ("eval nil", lambda r, k: r.eval("return nil", 0), None),
    ("eval error", lambda r, k: r.eval("return redis.error_reply('BOOM no')", 0), None),
    ("delete", lambda r, k: r.delete(k("s2"), k("nope")), None),
    # streams
    ("xgroup create", lambda r, k: r.xgroup_create(k("st"), "g", id="0", mkstream=True), None),
    ("xgroup busy", lambda r, k: r.xgroup_create(k("st"), "g", id="0", mkstream=True), None),
    ("xadd", lambda r, k: r.xadd(k("st"), {"kind": "msg", "n": 1}, id="1-1"), None),
    ("xadd maxlen", lambda r, k: r.xadd(k("st"), {"kind": "msg", "n": 2}, id="2-1", maxlen=1000), None),
    ("xadd exact", lambda r, k: r.xadd(k("st"), {"n": 3}, id="3-1", maxlen=100, approximate=False), None),
    ("xadd old id", lambda r, k: r.xadd(k("st"), {"n": 0}, id="1-0"), None),
    ("xreadgroup", lambda r, k: r.xreadgroup("g", "c1", {k("st"): ">"}, count=2), None),
    ("xreadgroup rest", lambda r, k: r.xreadgroup("g", "c1", {k("st"): ">"}, count=10, block=10), None),
    ("xreadgroup empty", lambda r, k: r.xreadgroup("g", "c1", {k("st"): ">"}, count=10), None),
    ("xreadgroup empty block", lambda r, k: r.xreadgroup("g", "c1", {k("st"): ">"}, count=1, block=5), None),
    ("xreadgroup own pending", lambda r, k: r.xreadgroup("g", "c1", {k("st"): "0"}), None),
    ("xpending", lambda r, k: r.xpending(k("st"), "g"), None),
    (
        "xpending range",
        lambda r, k: r.xpending_range(k("st"), "g", min="-", max="+", count=10),
        _without("time_since_delivered"),
    ),
    (
        "xpending one",
        lambda r, k: r.xpending_range(k("st"), "g", min="2-1", max="2-1", count=1),
        _without("time_since_delivered"),
    ),
    ("xclaim justid", lambda r, k: r.xclaim(k("st"), "g", "c2", 0, ["1-1"], justid=True), None),
    ("xclaim", lambda r, k: r.xclaim(k("st"), "g", "c2", 0, ["2-1"]), None),
    ("xautoclaim", lambda r, k: r.xautoclaim(k("st"), "g", "c3", 0, start_id="0-0", count=10), None),
    ("xautoclaim justid", lambda r, k: r.xautoclaim(k("st"), "g", "c3", 0, justid=True), None),
    ("xinfo consumers", lambda r, k: r.xinfo_consumers(k("st"), "g"), _without("idle", "inactive")),
    ("xinfo no group", lambda r, k: r.xinfo_consumers(k("st"), "nogroup"), None),
    ("xack", lambda r, k: r.xack(k("st"), "g", "1-1", "9-9"), None),
    ("xrevrange", lambda r, k: r.xrevrange(k("st"), count=2), None),
    ("xrevrange all", lambda r, k: r.xrevrange(k("st")), None),
    ("xrange", lambda r, k: r.xrange(k("st"), min="2-1"), None),
    ("xlen", lambda r, k: r.xlen(k("st")), None),
    ("xgroup delconsumer", lambda r, k: r.xgroup_delconsumer(k("st"), "g", "c3"), None),
    ("xrevrange missing", lambda r, k: r.xrevrange(k("nostream")), None),
]


async def test_every_command_gives_redis_py_results(pair: tuple[PyRedis, resp.Redis]) -> None:
    py, lean = pair
    run = secrets.token_hex(4)

    def twin(side: str) -> Callable[[str], str]:
        return lambda name: f"{PREFIX}resp:{run}:{side}:{name}"

    compared = 0
    for label, step, post in STEPS:
        expected = await _outcome(step, py, twin("py"))
        actual = await _outcome(step, lean, twin("lean"))
        if post is not None and not (isinstance(expected, tuple) and expected[:1] == ("error",)):
            expected, actual = post(expected), post(actual)
        assert actual == expected, f"{label}: lean {actual!r} != redis-py {expected!r}"
        compared += 1
    assert compared == len(STEPS)
    # The scenario exercised real data, not only empty replies.
    assert await lean.xlen(twin("lean")("st")) == 3  # the id below the top was refused


async def test_pipelines_match_redis_py(pair: tuple[PyRedis, resp.Redis]) -> None:
    py, lean = pair
    run = secrets.token_hex(4)
    outcomes: dict[str, list[Any]] = {}
    for side, client in (("py", py), ("lean", lean)):
        key = f"{PREFIX}resp:{run}:{side}:"
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key + "a", "1", ex=60)
            pipe.incr(key + "n")
            pipe.expire(key + "n", 60, nx=True)
            pipe.xadd(key + "st", {"f": "v"}, id="5-1", maxlen=10, approximate=True)
            pipe.hset(key + "h", mapping={"pid": 1})
            transaction = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(key + "a").incr(key + "a").incr(key + "st").get(key + "missing")
            loose = await pipe.execute(raise_on_error=False)
        errors: list[str] = []
        for transactional in (True, False):
            async with client.pipeline(transaction=transactional) as pipe:
                pipe.set(key + "b", "x")
                pipe.incr(key + "st")  # WRONGTYPE inside the batch
                try:
                    await pipe.execute()
                except (resp.ResponseError, PyResponseError) as exc:
                    # redis-py wraps the message in "Command # 2 (...) of pipeline caused error"; the server's
                    # words are what callers match on.
                    errors.append("WRONGTYPE Operation against a key" in str(exc))
            # Within MULTI the other commands still ran; outside it too.
            assert await client.get(key + "b") in ("x", b"x")
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key + "c", "1")
            pipe.xadd(key + "st", {"f": "v"}, id="1-1")  # an id below the top: refused at EXEC, not queueing
            with contextlib.suppress(resp.ResponseError, PyResponseError):
                await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            empty = await pipe.execute()
        outcomes[side] = [
            _normalise(transaction, key),
            [str(item) if isinstance(item, Exception) else item for item in loose],
            errors,
            await client.get(key + "c"),
            empty,
        ]
    assert outcomes["lean"] == outcomes["py"]
    assert outcomes["lean"][0][0] is True and outcomes["lean"][2] == [True, True]  # real results and errors


async def test_pubsub_delivers_like_redis_py() -> None:
    channel = f"{PREFIX}resp:{secrets.token_hex(4)}:updates"
    py = PyRedis.from_url(URL, decode_responses=True)
    lean = resp.Redis.from_url(URL, decode_responses=True)
    sub = lean.pubsub(ignore_subscribe_messages=True)
    try:
        await sub.subscribe(channel)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sub.get_message(timeout=0.2) is None  # the confirmation is skipped, nothing else came
        assert 0.15 <= loop.time() - started < 2
        for _ in range(50):  # the subscription is live once a publish reaches it
            if await py.publish(channel, "t1:5"):
                break
            await asyncio.sleep(0.02)
        message = await sub.get_message(timeout=2)
        assert message == {"type": "message", "pattern": None, "channel": channel, "data": "t1:5"}
        # After a reset (what the runtime does on an error) a new subscription works again.
        await sub.reset()
        assert await sub.get_message(timeout=0.05) is None
        await sub.subscribe(channel)
        for _ in range(50):
            if await py.publish(channel, "t1:6"):
                break
            await asyncio.sleep(0.02)
        assert (await sub.get_message(timeout=2))["data"] == "t1:6"
    finally:
        await sub.aclose()
        await lean.aclose()
        await py.aclose()


async def test_pubsub_reports_a_lost_connection() -> None:
    name = f"bfresp{secrets.token_hex(4)}"
    py = PyRedis.from_url(URL, decode_responses=True)
    lean = resp.Redis.from_url(URL, decode_responses=True, client_name=name)
    sub = lean.pubsub(ignore_subscribe_messages=True)
    try:
        await sub.subscribe(f"{PREFIX}resp:lost")
        await asyncio.sleep(0.05)
        assert await _kill_clients(py, name) == 1
        with pytest.raises(resp.ConnectionError):
            await sub.get_message(timeout=2)
    finally:
        await sub.aclose()
        await lean.aclose()
        await py.aclose()


async def _kill_clients(py: PyRedis, name: str) -> int:
    killed = 0
    for client in await py.client_list():
        if client.get("name") == name:
            killed += int(await py.execute_command("CLIENT", "KILL", "ID", client["id"]) == 1)
    return killed


async def test_a_cancelled_blocking_read_never_leaks_its_reply() -> None:
    lean = resp.Redis.from_url(URL, decode_responses=True, socket_timeout=5)
    stream = f"{PREFIX}resp:{secrets.token_hex(4)}:cancel"
    try:
        await lean.xgroup_create(stream, "g", id="0", mkstream=True)
        await lean.set(stream + ":k", "value")
        blocked = asyncio.create_task(lean.xreadgroup("g", "c", {stream: ">"}, count=1, block=600))
        await asyncio.sleep(0.1)
        blocked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await blocked
        # The XREADGROUP reply (nil after 600 ms) must not be read as the answer to these.
        await asyncio.sleep(0.7)
        assert await lean.get(stream + ":k") == "value"
        assert await lean.xlen(stream) == 0
    finally:
        await lean.aclose()


async def test_a_connection_killed_in_the_pool_is_replaced() -> None:
    name = f"bfresp{secrets.token_hex(4)}"
    py = PyRedis.from_url(URL, decode_responses=True)
    lean = resp.Redis.from_url(URL, decode_responses=True, client_name=name, socket_timeout=5)
    key = f"{PREFIX}resp:{secrets.token_hex(4)}:killed"
    try:
        assert await lean.set(key, "1") is True
        assert await _kill_clients(py, name) == 1
        await asyncio.sleep(0.05)
        assert await lean.incr(key) == 2  # ran once, on a new connection
        assert await py.get(key) == "2"
    finally:
        await lean.aclose()
        await py.aclose()


async def test_a_server_that_never_answers_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lean = resp.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(resp.TimeoutError):
            await lean.get("k")
        assert loop.time() - started < 2
        assert isinstance(resp.TimeoutError("x"), resp.redis_errors()), "catchable as a RedisError"
    finally:
        await lean.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_url_selects_the_database_and_sends_auth() -> None:
    py = PyRedis.from_url(URL, decode_responses=True)
    key = f"{PREFIX}resp:{secrets.token_hex(4)}:db"
    base = URL.rsplit("/", 1)[0] if URL.count("/") > 2 else URL
    lean = resp.Redis.from_url(f"{base}/3", decode_responses=True)
    try:
        await lean.set(key, "in-db-3", ex=60)
        assert await py.get(key) is None
        db3 = PyRedis.from_url(f"{base}/3", decode_responses=True)
        try:
            assert await db3.get(key) == "in-db-3"
            await db3.delete(key)
        finally:
            await db3.aclose()
        # A password the server does not expect is refused at connect, as redis-py refuses it.
        wrong = resp.Redis.from_url(base.replace("://", "://:not-the-password@", 1))
        with pytest.raises(resp.ResponseError):
            await wrong.ping()
        await wrong.aclose()
    finally:
        await lean.aclose()
        await py.aclose()


def test_url_forms() -> None:
    client = resp.Redis.from_url("rediss://user:p%40ss@cache.internal:6380/2?ssl_cert_reqs=none")
    options = client._options
    assert (options.host, options.port, options.db, options.ssl, options.ssl_cert_reqs) == (
        "cache.internal",
        6380,
        2,
        True,
        "none",
    )
    assert (options.username, options.password) == ("user", "p@ss")
    unix = resp.Redis.from_url("unix:///run/redis.sock?db=4")._options
    assert (unix.path, unix.db) == ("/run/redis.sock", 4)
    with pytest.raises(ValueError):
        resp.Redis.from_url("http://example.com")


def test_error_classes_cover_both_clients() -> None:
    import redis.exceptions

    assert redis.exceptions.ResponseError in resp.redis_errors("ResponseError")
    assert resp.ResponseError in resp.redis_errors("ResponseError")
    assert redis.exceptions.RedisError in resp.redis_errors()


def test_the_runtime_process_never_imports_redis_py() -> None:
    code = (
        "import sys, bot_runtime.__main__, bot_runtime.channels.telegram, bot_runtime.channels.widget, "
        "bot_runtime.channels.poller, bot_runtime.answering.tenant, bot_runtime.answering.index; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'opentelemetry', 'valkey'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
