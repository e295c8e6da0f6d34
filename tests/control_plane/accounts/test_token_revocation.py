"""Access tokens are bound to their refresh session: a password change or logout ends the others at once."""

from __future__ import annotations

import httpx

from tests.factories import PASSWORD, make_account


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_password_change_ends_other_access_tokens_but_keeps_the_callers(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    phone = await _login(client, account.email)
    change = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=account.headers,
    )
    assert change.status_code in (200, 204), change.text
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200
    assert (await client.get("/api/v1/me", headers=phone)).status_code == 401


async def test_logout_ends_its_access_token(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    out = await client.post("/api/v1/auth/logout", headers=account.headers)
    assert out.status_code == 204
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 401


async def test_forged_session_claim_is_refused(client: httpx.AsyncClient) -> None:
    from control_plane.kit import security

    account = await make_account(client)
    token, _ = security.create_access_token(account.me["id"], extra={"sid": "not-a-uuid"})
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
