"""Admin sign-in (ADMIN_PASSWORD, platform admin users), the admin API's authorization, and the admin pages."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import jwt
import pytest

from tests.control_plane.accounts.helpers import csrf_from, make_platform_admin, set_cookies, settings_override
from tests.factories import PASSWORD, make_account

ADMIN_PASSWORD = "admin-test-password-1"  # set by tests/conftest.py


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/api/v1/admin/login", json={"password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_admin_password_signs_in_the_builtin_admin(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/admin/login", json={"password": ADMIN_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["typ"], claims["sub"]) == ("admin", "platform-admin")


async def test_wrong_admin_password_is_401_and_limited_per_ip(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with settings_override(monkeypatch, login_fail_limit_per_ip=3):
        for _ in range(3):
            wrong = await client.post("/api/v1/admin/login", json={"password": "guess"})
            assert wrong.status_code == 401
            assert wrong.json()["error"]["code"] == "not_authenticated"
        blocked = await client.post("/api/v1/admin/login", json={"password": ADMIN_PASSWORD})
        assert blocked.status_code == 429
        assert "Retry-After" in blocked.headers


async def test_no_admin_password_means_no_builtin_admin(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with settings_override(monkeypatch, admin_password=""):
        assert (await client.post("/api/v1/admin/login", json={"password": ""})).status_code == 422
        assert (await client.post("/api/v1/admin/login", json={"password": "\0unset"})).status_code == 401


async def test_admin_token_reaches_tenants_and_others_do_not(client: httpx.AsyncClient) -> None:
    owner = await make_account(client, email="shop@example.com")
    await make_account(client, email="cafe@example.com")

    listing = await client.get("/api/v1/admin/tenants", headers=await admin_headers(client))
    assert listing.status_code == 200
    body = listing.json()
    assert body["total"] == 2
    assert {item["owner_email"] for item in body["items"]} == {"shop@example.com", "cafe@example.com"}
    assert all(item["members"] == 1 and item["bots"] == 0 for item in body["items"])

    search = await client.get("/api/v1/admin/tenants", params={"q": "shop@"}, headers=await admin_headers(client))
    assert [item["owner_email"] for item in search.json()["items"]] == ["shop@example.com"]
    wildcard = await client.get("/api/v1/admin/tenants", params={"q": "%"}, headers=await admin_headers(client))
    assert wildcard.json()["total"] == 0  # LIKE wildcards are matched literally
    paged = await client.get("/api/v1/admin/tenants", params={"limit": 1}, headers=await admin_headers(client))
    assert (len(paged.json()["items"]), paged.json()["total"]) == (1, 2)

    assert (await client.get("/api/v1/admin/tenants", headers=owner.headers)).status_code == 403
    assert (await client.get("/api/v1/admin/tenants")).status_code == 401
    bad_limit = await client.get("/api/v1/admin/tenants", params={"limit": 0}, headers=await admin_headers(client))
    assert bad_limit.status_code == 422


async def test_platform_admin_user_signs_in_with_own_password(client: httpx.AsyncClient) -> None:
    user = await make_account(client, email="ops@example.com")
    not_yet = await client.post("/api/v1/admin/login", json={"email": user.email, "password": PASSWORD})
    assert not_yet.status_code == 403
    # A normal user token never reaches the admin API, even for an admin user: only an admin token does.
    await make_platform_admin(user.email)
    assert (await client.get("/api/v1/admin/tenants", headers=user.headers)).status_code == 403

    wrong = await client.post("/api/v1/admin/login", json={"email": user.email, "password": "wrong password"})
    assert wrong.status_code == 401
    response = await client.post("/api/v1/admin/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["typ"], claims["sub"]) == ("admin", user.me["id"])
    listing = await client.get("/api/v1/admin/tenants", headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200


async def create_admin(email: str) -> tuple[int, str]:
    """Run ``botfactory create-admin EMAIL`` as its own process, against the test database."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control_plane.cli",
        "create-admin",
        email,
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, stderr.decode()


async def test_create_admin_command(client: httpx.AsyncClient) -> None:
    await make_account(client, email="cli@example.com")
    missing, _ = await create_admin("nobody@example.com")
    assert missing == 1
    done, stderr = await create_admin("CLI@example.com")
    assert done == 0, stderr
    response = await client.post("/api/v1/admin/login", json={"email": "cli@example.com", "password": PASSWORD})
    assert response.status_code == 200


async def test_admin_pages(client: httpx.AsyncClient) -> None:
    await make_account(client, email="listed@example.com")
    assert (await client.get("/en/admin/tenants")).headers["location"] == "/en/admin/login"
    assert (await client.get("/en/admin")).headers["location"] == "/en/admin/tenants"
    assert (await client.get("/admin")).headers["location"] == "/en/admin"

    token = await csrf_from(client, "/en/admin/login")
    no_csrf = await client.post("/en/admin/login", data={"password": ADMIN_PASSWORD})
    assert no_csrf.status_code == 403
    wrong = await client.post("/en/admin/login", data={"csrf_token": token, "password": "nope"})
    assert wrong.status_code == 401
    assert 'class="alert alert-error"' in wrong.text

    signed_in = await client.post(
        "/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD, "email": ""}
    )
    assert signed_in.status_code == 303
    cookie = set_cookies(signed_in)["bf_session_admin"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = await client.get("/en/admin/tenants")
    assert page.status_code == 200
    assert "listed@example.com" in page.text

    out = await client.post("/en/admin/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert (await client.get("/en/admin/tenants")).status_code == 303


async def test_admin_pages_accept_a_signed_in_platform_admin(client: httpx.AsyncClient) -> None:
    user = await make_account(client, email="staff@example.com")
    token = await csrf_from(client, "/en/login")
    await client.post("/en/login", data={"csrf_token": token, "email": user.email, "password": PASSWORD})
    assert (await client.get("/en/admin/tenants")).status_code == 303  # a normal user is sent to the admin sign-in
    await make_platform_admin(user.email)
    assert (await client.get("/en/admin/tenants")).status_code == 200
