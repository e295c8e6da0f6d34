"""The background model-id check: run against the fake Gemini API, stored in Redis, warned about on the tenants page."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import redis

from control_plane.jobs import model_check
from control_plane.kit.redis import get_redis
from control_plane.settings import get_settings
from tests.admin_console.test_admin import ADMIN_PASSWORD
from tests.control_plane.accounts.helpers import csrf_from
from tests.fakes import FakeGemini


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_keys=["test-gemini-key"])
    with fake.serve():
        yield fake


@pytest.fixture
def configured(gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "google_api_key", "test-gemini-key")
    monkeypatch.setattr(settings, "gemini_api_base_url", gemini.base_url)
    monkeypatch.setattr(settings, "gemini_flash_model", "gemini-3.5-flash")
    monkeypatch.setattr(settings, "gemini_pro_model", "gemini-0-retired-pro")


async def test_a_missing_model_id_is_reported_stored_and_shown(
    configured: None, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    store = get_redis()
    with caplog.at_level(logging.INFO, logger="control_plane.answering"):
        result = await model_check.check_models(get_settings(), store, wait=3)
    assert result is not None
    assert result["models"] == {"gemini-3.5-flash": True, "gemini-0-retired-pro": False}
    assert result["missing"] == ["gemini-0-retired-pro"]
    checked = [r for r in caplog.records if r.getMessage() == "answering.models.checked"]
    assert checked and checked[0].models == result["models"]  # type: ignore[attr-defined]
    assert (await model_check.read_result(store) or {})["missing"] == ["gemini-0-retired-pro"]

    token = await csrf_from(client, "/en/admin/login")
    await client.post("/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD, "email": ""})
    page = await client.get("/en/admin/tenants")
    assert page.status_code == 200
    assert "gemini-0-retired-pro" in page.text and "alert-warning" in page.text


async def test_every_id_present_means_no_warning(
    configured: None, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "gemini_pro_model", "gemini-3.1-pro-preview")
    result = await model_check.check_models(get_settings(), get_redis(), wait=3)
    assert result is not None and result["missing"] == []
    token = await csrf_from(client, "/en/admin/login")
    await client.post("/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD, "email": ""})
    assert "alert-warning" not in (await client.get("/en/admin/tenants")).text


async def test_no_key_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "google_api_key", "")
    assert await model_check.check_models(get_settings(), get_redis()) is None
    assert model_check.start_in_background() is None


def test_the_worker_start_check_runs_in_the_background(configured: None) -> None:
    settings = get_settings()
    thread = model_check.start_in_background(settings)
    assert thread is not None and thread.daemon
    thread.join(20)
    assert not thread.is_alive()
    stored = redis.Redis.from_url(settings.redis_url).get(model_check.result_key(settings))
    assert stored is not None and json.loads(stored)["missing"] == ["gemini-0-retired-pro"]
