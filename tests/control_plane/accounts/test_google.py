"""Sign in with Google against a loopback fake OpenID provider: new users, linking, refusals, and a broken flow."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from tests.control_plane.accounts.helpers import set_cookies, settings_override
from tests.factories import PASSWORD, make_account
from tests.fakes.oidc import FakeOidcProvider, OidcIdentity


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOidcProvider]:
    fake = FakeOidcProvider()
    with fake.serve():
        with settings_override(
            monkeypatch,
            google_oauth_client_id=fake.client_id,
            google_oauth_client_secret=fake.client_secret,
            google_oauth_metadata_url=fake.metadata_url,
        ):
            yield fake


async def google_round_trip(client: httpx.AsyncClient, start: str = "/en/login/google") -> httpx.Response:
    """The browser's part: our app → the provider (which consents at once) → back to our callback."""
    begin = await client.get(start)
    assert begin.status_code == 302, begin.text
    async with httpx.AsyncClient() as browser_at_provider:
        consent = await browser_at_provider.get(begin.headers["location"])
    assert consent.status_code == 302, consent.text
    callback = consent.headers["location"]
    assert callback.startswith("http://testserver/auth/google/callback?")
    return await client.get(callback)


async def user_row(email: str):  # type: ignore[no-untyped-def]
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import TenantMember, User

    async with get_sessionmaker()() as db:
        user = await db.scalar(select(User).where(User.email == email))
        tenants = (await db.scalars(select(TenantMember).where(TenantMember.user_id == user.id))).all() if user else []
        return user, tenants


async def test_new_google_user_gets_an_account_and_a_session(
    client: httpx.AsyncClient, provider: FakeOidcProvider
) -> None:
    provider.next_identity = OidcIdentity(sub="google-1", email="New.Person@example.com", name="New Person")
    done = await google_round_trip(client, "/ru/login/google")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ru/dashboard"
    assert "httponly" in set_cookies(done)["bf_session"].lower()
    user, memberships = await user_row("new.person@example.com")
    assert user.google_sub == "google-1"
    assert user.password_hash is None
    assert user.email_verified_at is not None
    assert user.language == "ru"
    assert [member.role for member in memberships] == ["owner"]
    me = await client.get("/api/v1/me")
    assert me.json()["email"] == "new.person@example.com"
    # The client authenticated with its secret and the code was bound to our redirect URI.
    assert provider.token_requests[0]["redirect_uri"] == "http://testserver/auth/google/callback"


async def test_links_by_verified_email_then_by_subject(client: httpx.AsyncClient, provider: FakeOidcProvider) -> None:
    account = await make_account(client, email="ann@example.com")
    provider.next_identity = OidcIdentity(sub="google-ann", email="ann@example.com")
    first = await google_round_trip(client)
    assert first.status_code == 303
    user, _ = await user_row("ann@example.com")
    assert user.google_sub == "google-ann"
    assert str(user.id) == account.me["id"]
    # An unverified account's password may belong to someone who never owned the mailbox: it is dropped.
    assert user.password_hash is None
    relogin = await client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert relogin.status_code == 401

    provider.next_identity = OidcIdentity(sub="google-ann", email="renamed@example.com")
    second = await google_round_trip(client)
    assert second.status_code == 303
    user, _ = await user_row("ann@example.com")
    assert user.google_sub == "google-ann"  # found by subject, email change at Google ignored


async def test_unverified_google_email_is_refused(client: httpx.AsyncClient, provider: FakeOidcProvider) -> None:
    await make_account(client, email="victim@example.com")
    provider.next_identity = OidcIdentity(sub="attacker", email="victim@example.com", email_verified=False)
    refused = await google_round_trip(client)
    assert refused.status_code == 303
    assert refused.headers["location"] == "/en/login?notice=google_sign_in_refused"
    assert 'class="alert alert-error"' in (await client.get(refused.headers["location"])).text
    user, _ = await user_row("victim@example.com")
    assert user.google_sub is None


async def test_next_survives_the_round_trip(client: httpx.AsyncClient, provider: FakeOidcProvider) -> None:
    provider.next_identity = OidcIdentity(sub="google-2", email="two@example.com")
    done = await google_round_trip(client, "/en/login/google?next=/en/profile")
    assert done.headers["location"] == "/en/profile"


async def test_a_forged_or_replayed_callback_fails(client: httpx.AsyncClient, provider: FakeOidcProvider) -> None:
    provider.next_identity = OidcIdentity(sub="google-3", email="three@example.com")
    begin = await client.get("/en/login/google")
    async with httpx.AsyncClient() as browser_at_provider:
        consent = await browser_at_provider.get(begin.headers["location"])
    callback = consent.headers["location"]
    forged = await client.get(callback.replace("state=", "state=x"))
    assert forged.headers["location"] == "/en/login?notice=google_sign_in_failed"
    ok = await client.get(callback)
    assert ok.headers["location"] == "/en/login?notice=google_sign_in_failed"  # the failed try used up the state
    user, _ = await user_row("three@example.com")
    assert user is None


async def test_an_id_token_with_a_foreign_signature_fails(
    client: httpx.AsyncClient, provider: FakeOidcProvider
) -> None:
    provider.next_identity = OidcIdentity(sub="google-4", email="four@example.com")
    provider.sign_with_unknown_key = True
    failed = "/en/login?notice=google_sign_in_failed"
    assert (await google_round_trip(client)).headers["location"] == failed
    provider.sign_with_unknown_key = False
    provider.override_nonce = "not-the-nonce-we-sent"
    assert (await google_round_trip(client)).headers["location"] == failed
    user, _ = await user_row("four@example.com")
    assert user is None


async def test_google_is_hidden_when_not_configured(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    with settings_override(monkeypatch, google_oauth_client_id="", google_oauth_client_secret=""):
        page = await client.get("/en/login")
        assert "/en/login/google" not in page.text
        assert (await client.get("/en/login/google")).status_code == 404
        assert (await client.get("/auth/google/callback?code=x&state=y")).status_code == 404


async def test_google_button_shows_when_configured(client: httpx.AsyncClient, provider: FakeOidcProvider) -> None:
    assert "/en/login/google" in (await client.get("/en/login")).text
    assert "/en/login/google" in (await client.get("/en/register")).text


async def test_an_unreachable_provider_is_a_friendly_error(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = FakeOidcProvider()
    with closed.serve():
        metadata_url = closed.metadata_url  # the port is free again once the server stops
    with settings_override(
        monkeypatch,
        google_oauth_client_id="id",
        google_oauth_client_secret="secret",
        google_oauth_metadata_url=metadata_url,
    ):
        response = await client.get("/ru/login/google")
        assert response.status_code == 303
        assert response.headers["location"] == "/ru/login?notice=google_sign_in_failed"
        assert 'class="alert alert-error"' in (await client.get(response.headers["location"])).text
