"""Runtime-side Telegram fixtures: the fake Bot API, a tenant runtime on the real Redis, and a Telegram channel.

The runtime is a real ``bot_runtime.runtime.Runtime`` (its Redis, usage counter and limit-notice markers), not
started: tests hand entries to the channel the way the runtime core would, through a ``HandlerContext``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from bot_runtime.channels.telegram import TelegramChannel
from bot_runtime.runtime import Runtime, RuntimeSettings
from tests.bot_runtime.channels.helpers import BOT_USERNAME, TOKEN, ScriptedAnswers, tenant_config
from tests.fakes import FakeTelegramAPI


@pytest.fixture(scope="session")
def _telegram_server() -> Iterator[FakeTelegramAPI]:
    fake = FakeTelegramAPI()
    with fake.serve():
        yield fake


@pytest.fixture
def telegram(_telegram_server: FakeTelegramAPI) -> FakeTelegramAPI:
    _telegram_server.reset()
    _telegram_server.register_bot(TOKEN, username=BOT_USERNAME, first_name="Shop")
    return _telegram_server


@pytest.fixture
def answers() -> ScriptedAnswers:
    return ScriptedAnswers()


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    tenant_id = str(uuid.uuid4())
    rt = Runtime(RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"]))
    rt.config = tenant_config(tenant_id, str(uuid.uuid4()))
    yield rt
    await rt.redis.aclose()


@pytest.fixture
async def channel(
    runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> AsyncIterator[TelegramChannel]:
    tg = TelegramChannel(answer=answers, api_base_url=telegram.base_url, poll_timeout=1)
    assert runtime.config is not None
    await tg.apply_config(runtime, runtime.config)
    yield tg
    await tg.aclose()
