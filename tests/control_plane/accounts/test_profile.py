"""Profile API: read and update name, language and time zone; change the password (other sessions signed out)."""

from __future__ import annotations

import httpx

from tests.factories import PASSWORD, make_account

NEW_PASSWORD = "another good passphrase"


async def test_update_profile(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    changed = await client.patch(
        "/api/v1/me",
        json={"name": "  Ann Smith ", "language": "uz", "timezone": "Asia/Tashkent"},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["language"], body["timezone"]) == ("Ann Smith", "uz", "Asia/Tashkent")
    partial = await client.patch("/api/v1/me", json={"name": "Ann"}, headers=account.headers)
    assert (partial.json()["name"], partial.json()["language"]) == ("Ann", "uz")
    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.json()["timezone"] == "Asia/Tashkent"


async def test_profile_bad_input(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    bad = await client.patch(
        "/api/v1/me",
        json={"timezone": "Mars/Olympus", "language": "de", "name": "   "},
        headers={**account.headers, "Accept-Language": "en"},
    )
    assert bad.status_code == 422
    fields = {item["field"]: item["message"] for item in bad.json()["error"]["fields"]}
    assert set(fields) == {"timezone", "language", "name"}
    assert fields["timezone"] == "Choose a time zone from the list."
    extra = await client.patch("/api/v1/me", json={"email": "x@example.com"}, headers=account.headers)
    assert extra.status_code == 422
    assert (await client.patch("/api/v1/me", json={"name": "X"})).status_code == 401


async def test_change_password_signs_out_other_sessions(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    other = await client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    other_refresh = other.json()["refresh_token"]

    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "wrong_password"
    assert wrong.json()["error"]["fields"][0]["field"] == "current_password"

    weak = await client.post(
        "/api/v1/me/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=account.headers
    )
    assert weak.status_code == 422

    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 204
    # Other sessions end; the caller's own session (the one its access token is bound to) goes on.
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": other_refresh})).status_code == 401
    kept = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert kept.status_code == 200
    login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert login.status_code == 200


async def test_wrong_current_passwords_count_as_failed_sign_ins(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    account = await make_account(client)
    for _ in range(settings.login_fail_limit_per_account):
        await client.post(
            "/api/v1/me/password",
            json={"current_password": "guess guess guess", "new_password": NEW_PASSWORD},
            headers=account.headers,
        )
    blocked = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert blocked.status_code == 429
