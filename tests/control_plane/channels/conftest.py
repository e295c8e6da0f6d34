"""A fake Telegram Bot API for the whole session (reset before each test) and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeTelegramAPI


@pytest.fixture(scope="session")
def _telegram_server() -> Iterator[FakeTelegramAPI]:
    fake = FakeTelegramAPI()
    with fake.serve():
        yield fake


@pytest.fixture
def telegram(_telegram_server: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegramAPI]:
    """The fake, clean, with TELEGRAM_API_BASE_URL at it and polling mode (DOMAIN_URL is http://testserver)."""
    from control_plane.settings import get_settings

    _telegram_server.reset()
    _telegram_server.allow_http_webhooks = False
    settings = get_settings()
    monkeypatch.setattr(settings, "telegram_api_base_url", _telegram_server.base_url)
    monkeypatch.setattr(settings, "telegram_mode", "auto")
    yield _telegram_server
    _telegram_server.allow_http_webhooks = False


@pytest.fixture
def webhook_mode(telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch) -> FakeTelegramAPI:
    """TELEGRAM_MODE=webhook; the fake acts like a --local Bot API server, which accepts http://testserver."""
    from control_plane.settings import get_settings

    monkeypatch.setattr(get_settings(), "telegram_mode", "webhook")
    telegram.allow_http_webhooks = True
    return telegram
