"""Rate limits of the accounts flows (the numbers are settings): registrations per IP, failed sign-ins per IP and
per account. Password reset and admin sign-in limits are tested with their flows."""

from __future__ import annotations

import httpx
import pytest

from tests.control_plane.accounts.helpers import csrf_from, settings_override
from tests.factories import PASSWORD, make_account


def registration(email: str) -> dict[str, str]:
    return {"email": email, "password": PASSWORD, "name": "Shop", "language": "en"}


async def test_registrations_are_limited_per_ip(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    with settings_override(monkeypatch, register_limit_per_ip=2):
        for number in range(2):
            ok = await client.post("/api/v1/auth/register", json=registration(f"r{number}@example.com"))
            assert ok.status_code == 201
        blocked = await client.post("/api/v1/auth/register", json=registration("r3@example.com"))
        assert blocked.status_code == 429
        assert "Retry-After" in blocked.headers
        # The register page shares the limit and shows it as a form error.
        token = await csrf_from(client, "/en/register")
        page = await client.post("/en/register", data={"csrf_token": token, **registration("r4@example.com")})
        assert page.status_code == 429
        assert 'class="alert alert-error"' in page.text


async def test_failed_sign_ins_are_limited_per_ip(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = await make_account(client)
    with settings_override(monkeypatch, login_fail_limit_per_ip=3):
        for number in range(3):  # three different accounts, so only the per-IP counter reaches its limit
            wrong = await client.post(
                "/api/v1/auth/login", json={"email": f"guess{number}@example.com", "password": "wrong password"}
            )
            assert wrong.status_code == 401
        blocked = await client.post("/api/v1/auth/login", json={"email": victim.email, "password": PASSWORD})
        assert blocked.status_code == 429


async def test_failed_sign_ins_are_limited_per_account_across_ips(
    app,  # type: ignore[no-untyped-def]
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await make_account(client)
    with settings_override(monkeypatch, login_fail_limit_per_account=2):
        for port in (1, 2):
            transport = httpx.ASGITransport(app=app, client=(f"10.0.0.{port}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
                wrong = await elsewhere.post("/api/v1/auth/login", json={"email": account.email, "password": "nope"})
                assert wrong.status_code == 401
        blocked = await client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert blocked.status_code == 429
        # The same limit guards the sign-in page.
        token = await csrf_from(client, "/en/login")
        page = await client.post("/en/login", data={"csrf_token": token, "email": account.email, "password": PASSWORD})
        assert page.status_code == 429
        assert "Retry-After" in page.headers
