"""Password reset: always 202, mail only for real accounts, single-use expiring token, sign-out everywhere, limits."""

from __future__ import annotations

import httpx
import pytest

from tests.control_plane.accounts.helpers import expire_email_tokens, latest_token, outbox_for, settings_override
from tests.factories import PASSWORD, make_account

NEW_PASSWORD = "a brand new passphrase"


async def test_unknown_address_gets_the_same_answer_and_no_mail(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    assert response.status_code == 202
    assert await outbox_for("nobody@example.com") == []


async def test_reset_sets_the_password_and_signs_out_everywhere(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    requested = await client.post("/api/v1/auth/password-reset", json={"email": account.email.upper()})
    assert requested.status_code == 202
    token = await latest_token(account.email, "password-reset")

    confirmed = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 204

    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401  # every refresh token was revoked
    old = await client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post("/api/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD})
    assert new.status_code == 200
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new.json()['access_token']}"})
    assert me.json()["email_verified"] is True  # the link proved the mailbox

    reused = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "yet another passphrase"}
    )
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "invalid_token"


async def test_expired_and_superseded_tokens_are_refused(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await client.post("/api/v1/auth/password-reset", json={"email": account.email})
    first = await latest_token(account.email, "password-reset")
    await client.post("/api/v1/auth/password-reset", json={"email": account.email})
    second = await latest_token(account.email, "password-reset")
    superseded = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": first, "password": NEW_PASSWORD}
    )
    assert superseded.status_code == 400
    await expire_email_tokens(account.email)
    expired = await client.post("/api/v1/auth/password-reset/confirm", json={"token": second, "password": NEW_PASSWORD})
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == "invalid_token"


async def test_a_verification_token_cannot_reset_a_password(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    verify_token = await latest_token(account.email, "verify-email")
    response = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": verify_token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 400


async def test_bad_input(client: httpx.AsyncClient) -> None:
    weak = await client.post("/api/v1/auth/password-reset/confirm", json={"token": "t" * 43, "password": "short"})
    assert weak.status_code == 422
    assert [field["field"] for field in weak.json()["error"]["fields"]] == ["password"]
    not_email = await client.post("/api/v1/auth/password-reset", json={"email": "not an email"})
    assert not_email.status_code == 422


async def test_requests_are_limited_per_ip(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    with settings_override(monkeypatch, password_reset_limit_per_ip=3):
        for number in range(3):
            ok = await client.post("/api/v1/auth/password-reset", json={"email": f"someone{number}@example.com"})
            assert ok.status_code == 202
        blocked = await client.post("/api/v1/auth/password-reset", json={"email": "someone@example.com"})
        assert blocked.status_code == 429
        assert "Retry-After" in blocked.headers


async def test_mails_per_address_are_capped_silently(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await make_account(client)
    with settings_override(monkeypatch, password_reset_limit_per_email=2):
        for _ in range(4):
            response = await client.post("/api/v1/auth/password-reset", json={"email": account.email})
            assert response.status_code == 202  # the same answer, so the cap reveals nothing
    resets = [mail for mail in await outbox_for(account.email) if "password-reset" in mail.body_text]  # type: ignore[attr-defined]
    assert len(resets) == 2
