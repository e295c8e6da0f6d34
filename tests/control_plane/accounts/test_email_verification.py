"""Email verification: the mail sent at registration, the single-use expiring token, resending, and the banner."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from tests.control_plane.accounts.helpers import expire_email_tokens, latest_token, link_token, outbox_for
from tests.factories import make_account


async def test_register_mails_a_link_and_only_its_hash_is_stored(client: httpx.AsyncClient) -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.kit.security import token_hash
    from control_plane.models import EmailToken

    account = await make_account(client, email="verify-me@example.com", language="ru")
    mails = await outbox_for(account.email)
    assert len(mails) == 1
    lang, token = link_token(mails[0].body_text, "verify-email")  # type: ignore[attr-defined]
    assert lang == "ru"  # the link opens in the language the user chose
    assert token in mails[0].body_html  # type: ignore[attr-defined]
    async with get_sessionmaker()() as db:
        stored = (await db.scalars(select(EmailToken))).all()
    assert [row.purpose for row in stored] == ["verify"]
    assert stored[0].token_hash == token_hash(token)
    assert token not in {row.token_hash for row in stored}


async def test_login_works_before_verification_and_verify_is_single_use(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    assert account.me["email_verified"] is False  # make_account signed in before verifying
    token = await latest_token(account.email, "verify-email")

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 204
    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.json()["email_verified"] is True

    reused = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "invalid_token"


async def test_expired_and_unknown_tokens_are_refused(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    token = await latest_token(account.email, "verify-email")
    await expire_email_tokens(account.email)
    expired = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == "invalid_token"
    unknown = await client.post("/api/v1/auth/verify-email", json={"token": "x" * 43})
    assert unknown.status_code == 400
    malformed = await client.post("/api/v1/auth/verify-email", json={"token": 5})
    assert malformed.status_code == 422


async def test_resend_replaces_the_old_link(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    first = await latest_token(account.email, "verify-email")
    resent = await client.post("/api/v1/auth/resend-verification", headers=account.headers)
    assert resent.status_code == 202
    second = await latest_token(account.email, "verify-email")
    assert second != first
    old = await client.post("/api/v1/auth/verify-email", json={"token": first})
    assert old.status_code == 400
    new = await client.post("/api/v1/auth/verify-email", json={"token": second})
    assert new.status_code == 204
    again = await client.post("/api/v1/auth/resend-verification", headers=account.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_verified"


async def test_resend_needs_sign_in_and_is_rate_limited(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/api/v1/auth/resend-verification")).status_code == 401
    account = await make_account(client)
    for _ in range(settings.verification_resend_limit_per_user):
        ok = await client.post("/api/v1/auth/resend-verification", headers=account.headers)
        assert ok.status_code == 202
    blocked = await client.post("/api/v1/auth/resend-verification", headers=account.headers)
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    assert len(await outbox_for(account.email)) == 1 + settings.verification_resend_limit_per_user


async def test_two_concurrent_uses_of_one_link_succeed_once(client: httpx.AsyncClient) -> None:
    import asyncio

    account = await make_account(client)
    await client.post("/api/v1/auth/password-reset", json={"email": account.email})
    token = await latest_token(account.email, "password-reset")
    results = await asyncio.gather(
        *(
            client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": f"passphrase {n}"})
            for n in range(4)
        )
    )
    assert sorted(response.status_code for response in results) == [204, 400, 400, 400]
