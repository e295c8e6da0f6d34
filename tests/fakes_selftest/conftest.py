"""Fixtures for the fakes' own tests: one server per fake for the whole session, reset before every test.

Starting a uvicorn server costs little, but stopping one takes ~0.2 s (uvicorn's shutdown ticks), so the servers are
shared and each test gets a clean fake through ``reset()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes import FakeGemini, FakeOpenAI, FakeTelegramAPI


@pytest.fixture(autouse=True)
async def clean_slate() -> AsyncIterator[None]:
    """Overrides the suite-wide database/Redis wipe: the fakes touch neither, and the wipe costs ~0.3 s a test."""
    yield


@pytest.fixture(scope="session")
def _telegram_server() -> Iterator[FakeTelegramAPI]:
    fake = FakeTelegramAPI()
    with fake.serve():
        yield fake


@pytest.fixture
def telegram(_telegram_server: FakeTelegramAPI) -> FakeTelegramAPI:
    _telegram_server.reset()
    return _telegram_server


@pytest.fixture(scope="session")
def _gemini_server() -> Iterator[FakeGemini]:
    fake = FakeGemini()
    with fake.serve():
        yield fake


@pytest.fixture
def gemini(_gemini_server: FakeGemini) -> FakeGemini:
    _gemini_server.reset()
    return _gemini_server


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with fake.serve():
        yield fake


@pytest.fixture
def openai_fake(_openai_server: FakeOpenAI) -> FakeOpenAI:
    _openai_server.reset()
    return _openai_server
