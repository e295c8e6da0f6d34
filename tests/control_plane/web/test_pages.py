"""Public pages and the UI shell: landing in three languages, language resolution and switching, error pages,
health checks, and the concurrency guarantee that each request renders in its own language."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.factories import make_account

ROOT = Path(__file__).resolve().parents[3]
HTML = {"Accept": "text/html,application/xhtml+xml"}

# One word per language that only a translated page contains (the "Pricing" heading and the plan name).
PRICING_WORD = {"uz": "Tariflar", "ru": "Тарифы", "en": "Pricing"}
BUSINESS_PLAN = {"uz": "Biznes", "ru": "Бизнес", "en": "Business"}
# Babel's per-locale currency formats (a no-break space separates the amount and the sign in uz and ru).
PRICES = {
    "en": ("$49", "$99"),
    "ru": ("49\xa0$", "99\xa0$"),
    "uz": ("49\xa0US$", "99\xa0US$"),
}


def switch_href(code: str, page: str) -> str:
    """The language switcher's link for ``code`` while viewing ``page`` (as Jinja's urlencode writes it)."""
    return f"/{code}/language?next={quote(page, safe='/')}"


async def sign_in_browser(client: httpx.AsyncClient) -> None:
    """A real browser session cookie for a fresh account, without depending on the login form's markup."""
    from sqlalchemy import select

    from control_plane.accounts.service import start_browser_session
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import User
    from control_plane.settings import get_settings

    account = await make_account(client)
    async with get_sessionmaker()() as db:
        user = (await db.execute(select(User).where(User.email == account.email))).scalar_one()
        secret = await start_browser_session(db, user, user_agent="pytest", ip="127.0.0.1")
        await db.commit()
    client.cookies.set(get_settings().session_cookie_name, secret)


# ----------------------------------------------------------------------------------------------- landing


@pytest.mark.parametrize("lang", ["uz", "ru", "en"])
async def test_landing_renders_in_each_language(client: httpx.AsyncClient, lang: str) -> None:
    response = await client.get(f"/{lang}/", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'<html lang="{lang}">' in html
    assert PRICING_WORD[lang] in html
    assert BUSINESS_PLAN[lang] in html
    for price in PRICES[lang]:
        assert price in html, price
    others = [word for code, word in PRICING_WORD.items() if code != lang]
    assert not any(f">{word}<" in html for word in others)


async def test_landing_has_the_sections_and_every_plan(client: httpx.AsyncClient) -> None:
    from billing.plans import PLANS

    html = (await client.get("/en/", headers=HTML)).text
    for anchor in ('id="how-it-works"', 'id="channels"', 'id="pricing"', 'id="faq"'):
        assert anchor in html
    for plan in PLANS.values():
        assert f'id="plan-{plan.code}"' in html
        for feature in plan.features:
            assert feature in html
    assert "Gemini 2.5 Pro model" in html
    assert 'href="/en/register"' in html


async def test_landing_money_follows_the_request_locale() -> None:
    from bot_runtime.i18n import use_locale
    from control_plane.kit.i18n import format_money

    for lang, (business, enterprise) in PRICES.items():
        with use_locale(lang):
            assert format_money(4900, "USD") == business
            assert format_money(9900, "USD") == enterprise
    # Cents are kept when there are any.
    with use_locale("en"):
        assert format_money(4950, "USD") == "$49.50"
    with use_locale("ru"):
        assert format_money(4950, "USD") == "49,50\xa0$"


async def test_shell_has_skip_link_csrf_meta_and_assets(client: httpx.AsyncClient) -> None:
    html = (await client.get("/en/", headers=HTML)).text
    assert 'class="skip-link" href="#main"' in html
    assert 'id="main"' in html
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert token and len(token.group(1)) > 20
    assert '<link rel="stylesheet" href="/static/css/app.css">' in html
    assert '<script src="/static/js/app.js"></script>' in html
    for code in ("uz", "ru", "en"):
        assert f'<link rel="alternate" hreflang="{code}" href="/{code}/">' in html
    css = await client.get("/static/css/app.css")
    assert css.status_code == 200 and "--space-4" in css.text
    assert (await client.get("/static/js/app.js")).status_code == 200


async def test_anonymous_and_signed_in_navigation(client: httpx.AsyncClient) -> None:
    anonymous = (await client.get("/ru/", headers=HTML)).text
    assert 'href="/ru/login"' in anonymous and 'href="/ru/register"' in anonymous
    assert 'action="/ru/logout"' not in anonymous

    await sign_in_browser(client)
    signed_in = (await client.get("/ru/", headers=HTML)).text
    assert 'href="/ru/dashboard"' in signed_in and 'href="/ru/profile"' in signed_in
    assert 'action="/ru/logout"' in signed_in
    assert 'href="/ru/login"' not in signed_in
    assert "Мои боты" in signed_in


# ----------------------------------------------------------------------------------------------- design system


def test_stylesheet_defines_every_component_class() -> None:
    """Other templates rely on these class names; renaming one in the CSS must fail here first."""
    css = (ROOT / "static" / "css" / "app.css").read_text(encoding="utf-8")
    classes = """container topbar brand nav lang-switch footer hero lead grid grid-2 grid-3 card plan price checklist
        stack inline form-field label input textarea select field-error help btn btn-primary btn-secondary btn-danger
        btn-link btn-sm alert alert-error alert-success alert-info alert-warning badge badge-on badge-off muted
        empty-state table tabs code-block copy-button error-page error-code banner skip-link nav-toggle""".split()
    missing = [name for name in classes if not re.search(rf"\.{re.escape(name)}(?![\w-])", css)]
    assert not missing, missing
    assert re.search(r"\.lang-switch a\.active", css)
    for token in ("--space-", "--text-", "--brand-", "--neutral-", "--success-", "--warning-", "--danger-"):
        assert token in css
    for token in ("--radius-", "--shadow-", ":focus-visible", "@media (max-width"):
        assert token in css
    assert "http://" not in css and "https://" not in css  # no CDN, no web fonts


def test_macros_render_accessible_fields() -> None:
    from bot_runtime.i18n import use_locale
    from control_plane.kit.templating import env

    template = env.from_string(
        '{% import "_macros.html" as ui with context %}'
        "<form>{{ ui.csrf_field() }}"
        "{{ ui.field('email', 'Email', type='email', value='a@b.c', errors={'email': 'Bad'}, help='Hint') }}"
        "{{ ui.field('password', 'Password', type='password', value='secret') }}"
        "{{ ui.select('lang', 'Language', [('uz', 'Uz'), ('ru', 'Ru')], selected='ru') }}"
        "{{ ui.textarea('about', 'About', value='<b>x</b>') }}"
        "{{ ui.button('Delete', kind='danger', confirm='Sure?') }}"
        "{{ ui.post_button('/en/x', 'Remove', kind='danger', confirm='Really?') }}"
        "{{ ui.alert('Saved', 'success') }}{{ ui.badge(true, 'On', 'Off') }}</form>"
    )
    with use_locale("en"):
        html = template.render(csrf_token="tok123")
    assert '<input type="hidden" name="csrf_token" value="tok123">' in html
    assert 'aria-describedby="field-email-help field-email-error"' in html
    assert 'aria-invalid="true"' in html
    assert '<p class="field-error" id="field-email-error">Bad</p>' in html
    assert 'value="a@b.c"' in html and "secret" not in html  # passwords are never echoed back
    assert '<option value="ru" selected>' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert 'class="btn btn-danger" type="submit" data-confirm="Sure?"' in html
    assert 'data-confirm="Really?"' in html and 'value="tok123"' in html
    assert 'class="alert alert-success" role="status"' in html
    assert '<span class="badge badge-on">On</span>' in html


# ----------------------------------------------------------------------------------------------- languages


async def test_root_redirects_by_cookie_then_accept_language_then_english(client: httpx.AsyncClient) -> None:
    cases = [
        ({}, "/en/"),
        ({"Accept-Language": "uz-UZ,uz;q=0.9,ru;q=0.8"}, "/uz/"),
        ({"Accept-Language": "fr-FR, ru;q=0.5, en;q=0.3"}, "/ru/"),
        ({"Accept-Language": "ru;q=0.2, en;q=0.9"}, "/en/"),
        ({"Accept-Language": "de, fr"}, "/en/"),
        ({"Accept-Language": "ru", "Cookie": "bf_lang=uz"}, "/uz/"),
        ({"Accept-Language": "uz", "Cookie": "bf_lang=xx"}, "/uz/"),
    ]
    for headers, target in cases:
        response = await client.get("/", headers=headers)
        assert response.status_code == 307, headers
        assert response.headers["location"] == target, headers


async def test_url_prefix_beats_cookie_and_accept_language(client: httpx.AsyncClient) -> None:
    response = await client.get("/uz/", headers={**HTML, "Cookie": "bf_lang=ru", "Accept-Language": "ru"})
    assert '<html lang="uz">' in response.text
    assert PRICING_WORD["uz"] in response.text


async def test_unprefixed_pages_redirect_to_the_resolved_language(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard", headers={"Cookie": "bf_lang=ru"})
    assert response.status_code == 307
    assert response.headers["location"] == "/ru/dashboard"

    response = await client.get("/login?next=/uz/bots", headers={"Accept-Language": "uz"})
    assert response.headers["location"] == "/uz/login?next=/uz/bots"

    response = await client.get("/bots/new")
    assert response.headers["location"] == "/en/bots/new"

    response = await client.get("/en", headers=HTML)
    assert response.status_code == 307 and response.headers["location"] == "/en/"

    # API and health paths are never language-prefixed.
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/api/v1/nothing-here")).status_code == 404


async def test_language_switcher_keeps_the_current_page(client: httpx.AsyncClient) -> None:
    landing = (await client.get("/ru/", headers=HTML)).text
    for code in ("uz", "ru", "en"):
        assert switch_href(code, f"/{code}/") in landing
    assert 'aria-current="true" class="active">Русский</a>' in landing

    page = (await client.get("/uz/no/such/page?tab=2", headers=HTML)).text
    for code in ("uz", "ru", "en"):
        assert switch_href(code, f"/{code}/no/such/page?tab=2").replace("&", "&amp;") in page


async def test_choosing_a_language_saves_the_cookie_and_returns(client: httpx.AsyncClient) -> None:
    response = await client.get("/ru/language", params={"next": "/ru/bots/123?tab=knowledge"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ru/bots/123?tab=knowledge"
    assert "bf_lang=ru" in response.headers["set-cookie"]

    # The saved choice now decides where bare paths go.
    assert (await client.get("/")).headers["location"] == "/ru/"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", ""])
async def test_language_switch_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    response = await client.get("/uz/language", params={"next": target})
    assert response.status_code == 303
    assert response.headers["location"] == "/uz/"


async def test_unknown_language_prefix_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/de/", headers=HTML)
    assert response.status_code == 404


async def test_concurrent_requests_each_render_in_their_own_language(client: httpx.AsyncClient) -> None:
    """The locale lives in a context variable per request: interleaved renders never leak into each other."""
    order = ["uz", "ru", "en"] * 12
    responses = await asyncio.gather(*(client.get(f"/{lang}/", headers=HTML) for lang in order))
    for lang, response in zip(order, responses, strict=True):
        assert response.status_code == 200
        assert f'<html lang="{lang}">' in response.text
        assert PRICING_WORD[lang] in response.text
        assert PRICES[lang][0] in response.text


async def test_concurrent_gettext_in_tasks_is_isolated() -> None:
    from bot_runtime.i18n import gettext, use_locale

    async def translate(lang: str) -> tuple[str, str]:
        with use_locale(lang):
            await asyncio.sleep(0)  # let the other tasks run in between
            first = gettext("Pricing")
            await asyncio.sleep(0)
            return lang, first + "|" + gettext("Pricing")

    results = await asyncio.gather(*(translate(lang) for lang in ["uz", "ru", "en"] * 20))
    for lang, text in results:
        assert text == f"{PRICING_WORD[lang]}|{PRICING_WORD[lang]}"


# ----------------------------------------------------------------------------------------------- errors


async def test_404_is_a_page_for_browsers_and_json_for_the_api(client: httpx.AsyncClient) -> None:
    page = await client.get("/ru/nowhere", headers=HTML)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Такой страницы не существует." in page.text
    assert 'class="error-code"' in page.text

    api = await client.get("/api/v1/nowhere", headers={"Accept-Language": "ru"})
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/json")
    assert api.json() == {"error": {"code": "not_found", "message": "Не найдено.", "fields": []}}

    english = await client.get("/api/v1/nowhere")
    assert english.json()["error"]["message"] == "Not found."

    # A non-browser client of an HTML path still gets JSON.
    plain = await client.get("/en/nowhere")
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("status", "lang", "text"),
    [
        (403, "uz", "Bu sahifaga kirish huquqingiz yoʻq."),
        (404, "en", "This page does not exist."),
        (500, "ru", "Что-то пошло не так на нашей стороне."),
    ],
)
async def test_error_pages_are_translated(status: int, lang: str, text: str) -> None:
    from starlette.requests import Request

    from bot_runtime.i18n import use_locale
    from control_plane.web.pages import render_error_page

    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/{lang}/somewhere",
        "raw_path": f"/{lang}/somewhere".encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "scheme": "http",
        "server": ("testserver", 80),
        "state": {"csrf_token": "t"},
    }
    with use_locale(lang):
        response = await render_error_page(Request(scope), status)
    assert response.status_code == status
    html = response.body.decode()
    assert text in html
    assert f'<p class="error-code" aria-hidden="true">{status}</p>' in html
    assert f'href="/{lang}/"' in html


# ----------------------------------------------------------------------------------------------- health


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_database_redis_and_migrations(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}
