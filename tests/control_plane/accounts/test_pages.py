"""Accounts pages end to end: forms with CSRF, errors beside fields, session and language cookies, redirects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.control_plane.accounts.helpers import (
    csrf_from,
    latest_token,
    outbox_for,
    set_cookies,
    settings_override,
)
from tests.factories import PASSWORD, make_account

META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


async def page_login(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    token = await csrf_from(client, "/en/login")
    return await client.post("/en/login", data={"csrf_token": token, "email": email, "password": password, **extra})


@pytest.fixture
async def browser(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """A second, independent browser (its own cookie jar)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def translated(msgid: str, lang: str) -> str:
    from bot_runtime.i18n import gettext, use_locale

    with use_locale(lang):
        return gettext(msgid)


async def test_register_page_creates_the_account_and_signs_in(client: httpx.AsyncClient) -> None:
    token = await csrf_from(client, "/en/register")
    response = await client.post(
        "/en/register",
        data={
            "csrf_token": token,
            "name": "Ann's Bakery",
            "email": "ann@example.com",
            "password": PASSWORD,
            "language": "ru",
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ru/dashboard"
    cookies = set_cookies(response)
    session = cookies["bf_session"].lower()
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session
    assert "secure" not in session  # DOMAIN_URL is http:// in the tests
    assert cookies["bf_lang"].startswith("bf_lang=ru;")
    assert len(await outbox_for("ann@example.com")) == 1

    profile = await client.get("/en/profile")
    assert profile.status_code == 200
    assert "ann@example.com" in profile.text
    assert 'class="banner' in profile.text  # not verified yet: the banner asks for it


async def test_register_page_shows_errors_beside_fields(client: httpx.AsyncClient) -> None:
    await make_account(client, email="taken@example.com")
    token = await csrf_from(client, "/ru/register")
    bad = await client.post(
        "/ru/register",
        data={"csrf_token": token, "name": "", "email": "not-an-email", "password": "short", "language": "ru"},
    )
    assert bad.status_code == 422
    assert 'value="not-an-email"' in bad.text
    assert 'value="short"' not in bad.text  # passwords are never echoed back
    errors = re.findall(r'<p class="field-error" id="e-(\w+)">([^<]+)</p>', bad.text)
    assert {name for name, _ in errors} == {"name", "email", "password"}
    assert dict(errors)["email"] == translated("Enter a valid email address.", "ru")

    taken = await client.post(
        "/ru/register",
        data={"csrf_token": token, "name": "X", "email": "TAKEN@example.com", "password": PASSWORD, "language": "en"},
    )
    assert taken.status_code == 409
    assert translated("Already registered.", "ru") in taken.text


async def test_forms_without_a_valid_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    await csrf_from(client, "/en/login")  # the browser has its seed cookie, but the form below omits the token
    form = {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}
    for path in ("/en/register", "/en/login", "/en/password-reset", "/en/logout", "/en/verify-email"):
        missing = await client.post(path, data=form)
        assert missing.status_code == 403, path
        forged = await client.post(path, data={**form, "csrf_token": "f" * 64})
        assert forged.status_code == 403, path
    html = await client.post("/en/login", data=form, headers={"Accept": "text/html"})
    assert html.status_code == 403
    assert "<html" in html.text


async def test_login_page(client: httpx.AsyncClient) -> None:
    account = await make_account(client, language="uz")
    wrong = await page_login(client, account.email, "not the password")
    assert wrong.status_code == 401
    assert 'class="alert alert-error"' in wrong.text
    assert f'value="{account.email}"' in wrong.text

    ok = await page_login(client, account.email)
    assert ok.status_code == 303
    assert ok.headers["location"] == "/uz/dashboard"  # the saved language wins after sign-in
    assert set_cookies(ok)["bf_lang"].startswith("bf_lang=uz;")
    again = await client.get("/en/login")
    assert again.status_code == 303  # already signed in


@pytest.mark.parametrize(
    ("next_path", "expected"),
    [
        ("/en/profile", "/en/profile"),
        ("/en/bots/1?tab=2", "/en/bots/1?tab=2"),
        ("//evil.example/", "/en/dashboard"),
        ("/\\evil.example", "/en/dashboard"),
        ("https://evil.example/", "/en/dashboard"),
        ("javascript:alert(1)", "/en/dashboard"),
    ],
)
async def test_login_honours_only_same_site_next(client: httpx.AsyncClient, next_path: str, expected: str) -> None:
    account = await make_account(client)
    response = await page_login(client, account.email, next=next_path)
    assert response.status_code == 303
    assert response.headers["location"] == expected


async def test_login_page_carries_next_into_the_form(client: httpx.AsyncClient) -> None:
    page = await client.get("/en/login", params={"next": "/en/profile"})
    assert 'name="next" value="/en/profile"' in page.text
    evil = await client.get("/en/login", params={"next": "//evil.example"})
    assert 'name="next"' not in evil.text


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await page_login(client, account.email)
    session = client.cookies.get("bf_session")
    token = await csrf_from(client, "/en/profile")
    out = await client.post("/en/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert out.headers["location"].startswith("/en/login")
    assert "max-age=0" in set_cookies(out)["bf_session"].lower()
    client.cookies.set("bf_session", session or "")
    assert (await client.get("/api/v1/me")).status_code == 401  # the old cookie value is dead server-side
    assert (await client.get("/en/profile")).status_code == 303


async def test_session_cookie_is_secure_over_https(app, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    with settings_override(monkeypatch, domain_url="https://botfactory.example"):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as https_client:
            account = await make_account(https_client)
            response = await page_login(https_client, account.email)
            assert response.status_code == 303
            cookies = set_cookies(response)
            assert "secure" in cookies["bf_session"].lower()
            assert "httponly" in cookies["bf_session"].lower()


async def test_cookie_api_calls_need_the_csrf_header_and_bearer_calls_do_not(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await page_login(client, account.email)
    assert (await client.get("/api/v1/me")).status_code == 200  # safe methods need no token

    refused = await client.patch("/api/v1/me", json={"name": "Changed"})
    assert refused.status_code == 403
    wrong = await client.patch("/api/v1/me", json={"name": "Changed"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403

    page = await client.get("/en/profile")
    header = META_CSRF.search(page.text)
    assert header
    accepted = await client.patch("/api/v1/me", json={"name": "Changed"}, headers={"X-CSRF-Token": header.group(1)})
    assert accepted.status_code == 200

    bearer_only = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")  # no cookies
    async with bearer_only:
        bearer = await bearer_only.patch("/api/v1/me", json={"name": "By token"}, headers=account.headers)
    assert bearer.status_code == 200


async def test_password_reset_pages(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    token = await csrf_from(client, "/en/password-reset")
    sent = await client.post("/en/password-reset", data={"csrf_token": token, "email": account.email})
    assert sent.status_code == 200
    assert 'class="alert alert-success"' in sent.text
    reset_token = await latest_token(account.email, "password-reset")

    form = await client.get("/en/password-reset", params={"token": reset_token})
    assert f'name="token" value="{reset_token}"' in form.text
    short = await client.post(
        "/en/password-reset", data={"csrf_token": token, "token": reset_token, "password": "short"}
    )
    assert short.status_code == 422
    assert 'class="field-error"' in short.text
    done = await client.post(
        "/en/password-reset", data={"csrf_token": token, "token": reset_token, "password": "fresh passphrase"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/en/login?notice=password-reset"
    notice = await client.get(done.headers["location"])
    assert 'class="alert alert-success"' in notice.text

    reused = await client.post(
        "/en/password-reset", data={"csrf_token": token, "token": reset_token, "password": "other passphrase"}
    )
    assert reused.status_code == 400
    assert 'class="alert alert-error"' in reused.text
    assert (await page_login(client, account.email, "fresh passphrase")).status_code == 303


async def test_verify_email_page_and_banner_resend(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await page_login(client, account.email)
    token = await csrf_from(client, "/en/profile")
    resent = await client.post("/en/verify-email", data={"csrf_token": token})
    assert resent.status_code == 200
    assert len(await outbox_for(account.email)) == 2
    link_token = await latest_token(account.email, "verify-email")

    verified = await client.get("/en/verify-email", params={"token": link_token})
    assert verified.status_code == 200
    assert 'class="alert alert-success"' in verified.text
    profile = await client.get("/en/profile")
    assert 'class="banner' not in profile.text  # verified: no more banner

    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as anonymous:
        reused = await anonymous.get("/en/verify-email", params={"token": link_token})
    assert reused.status_code == 400
    assert 'class="alert alert-error"' in reused.text


async def test_profile_page(client: httpx.AsyncClient, browser: httpx.AsyncClient) -> None:
    anonymous = await client.get("/en/profile")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/en/login?next=%2Fen%2Fprofile"

    account = await make_account(client)
    await page_login(client, account.email)
    await page_login(browser, account.email)  # a second device
    token = await csrf_from(client, "/en/profile")

    bad = await client.post(
        "/en/profile",
        data={"csrf_token": token, "form": "profile", "name": "Ann", "language": "en", "timezone": "Nowhere"},
    )
    assert bad.status_code == 422
    assert 'id="e-timezone"' in bad.text

    saved = await client.post(
        "/en/profile",
        data={"csrf_token": token, "form": "profile", "name": "Ann", "language": "ru", "timezone": "Asia/Tashkent"},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/ru/profile?notice=profile-saved"
    assert set_cookies(saved)["bf_lang"].startswith("bf_lang=ru;")
    page = await client.get(saved.headers["location"])
    assert '<option value="Asia/Tashkent" selected>' in page.text

    wrong = await client.post(
        "/ru/profile",
        data={
            "csrf_token": token,
            "form": "password",
            "current_password": "nope nope",
            "new_password": "new passphrase",
        },
    )
    assert wrong.status_code == 400
    assert 'id="e-current_password"' in wrong.text
    changed = await client.post(
        "/ru/profile",
        data={"csrf_token": token, "form": "password", "current_password": PASSWORD, "new_password": "new passphrase"},
    )
    assert changed.status_code == 303
    assert (await client.get("/ru/profile")).status_code == 200  # this browser stays signed in
    assert (await browser.get("/ru/profile")).status_code == 303  # the other one was signed out


async def test_dev_outbox(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    account = await make_account(client, email="outbox@example.com")
    page = await client.get("/en/dev/outbox")
    assert page.status_code == 200
    assert account.email in page.text
    assert '<a href="http://testserver/en/verify-email?token=' in page.text
    with settings_override(monkeypatch, environment="production"):
        assert (await client.get("/en/dev/outbox")).status_code == 404
