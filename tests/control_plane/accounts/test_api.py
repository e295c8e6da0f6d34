"""Accounts API: register, login, refresh rotation, logout, me, and bad input."""

from __future__ import annotations

import httpx

from tests.factories import PASSWORD, make_account


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    account = await make_account(client, email="Ann@Example.com")
    assert account.me["email"] == "ann@example.com"
    assert account.me["email_verified"] is False
    assert account.me["tenants"][0]["plan"] == "free"
    assert account.me["tenants"][0]["role"] == "owner"
    assert account.me["tenants"][0]["trial_ends_at"]


async def test_duplicate_email_is_conflict(client: httpx.AsyncClient) -> None:
    await make_account(client, email="dup@example.com")
    again = await client.post(
        "/api/v1/auth/register", json={"email": "DUP@example.com", "password": PASSWORD, "name": "X", "language": "en"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


async def test_validation_errors_are_translated(client: httpx.AsyncClient) -> None:
    bad = {"email": "not-an-email", "password": "short", "name": "", "language": "de"}
    response = await client.post("/api/v1/auth/register", json=bad, headers={"Accept-Language": "ru"})
    assert response.status_code == 422
    error = response.json()["error"]
    fields = {item["field"]: item["message"] for item in error["fields"]}
    assert set(fields) == {"email", "password", "name", "language"}
    assert error["message"] != "Some fields are not valid."  # Russian, not the English msgid


async def test_malformed_json_is_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_wrong_password_and_refresh_rotation(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    wrong = await client.post("/api/v1/auth/login", json={"email": account.email, "password": "nope-nope-nope"})
    assert wrong.status_code == 401
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    assert first.json()["token_type"] == "bearer"
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reused.status_code == 401


async def test_logout_revokes_refresh_token(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": account.refresh_token}, headers=account.headers
    )
    assert out.status_code == 204
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert again.status_code == 401


async def test_me_requires_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/me")).status_code == 401
    bad = await client.get("/api/v1/me", headers={"Authorization": "Bearer garbage"})
    assert bad.status_code == 401


async def test_login_failures_are_rate_limited(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    account = await make_account(client)
    for _ in range(settings.login_fail_limit_per_account):
        await client.post("/api/v1/auth/login", json={"email": account.email, "password": "wrong-password"})
    blocked = await client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
