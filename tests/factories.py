"""Small factories that build test data through the real API."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

PASSWORD = "correct horse battery"


@dataclass
class Account:
    email: str
    password: str
    access_token: str
    refresh_token: str
    me: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def tenant_id(self) -> str:
        return str(self.me["tenants"][0]["id"])


async def make_account(client: httpx.AsyncClient, *, email: str | None = None, language: str = "en") -> Account:
    email = email or f"owner-{secrets.token_hex(4)}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Owner", "language": language}
    )
    assert response.status_code == 201, response.text
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    return Account(email, PASSWORD, tokens["access_token"], tokens["refresh_token"], me.json())


async def make_bot(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": "Shop helper", "description": "Answers shop questions", "language": "en", **fields}
    response = await client.post("/api/v1/bots", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()
