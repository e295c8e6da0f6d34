"""Bots pages: dashboard, new bot, bot page with sections, avatar upload, delete confirmation, sign-in redirects."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.control_plane.bots.helpers import add_tenant_member, browser_client, image_bytes, set_tenant
from tests.factories import make_account, make_bot

LANGS = ("en", "ru", "uz")


def created_bot_id(response: httpx.Response) -> str:
    match = re.fullmatch(r"/en/bots/([0-9a-f-]{36})\?done=created", response.headers["location"])
    assert match, response.headers.get("location")
    return match.group(1)


@pytest.mark.parametrize(
    "path", ["/en/dashboard", "/ru/bots/new", f"/uz/bots/{uuid.uuid4()}", f"/en/bots/{uuid.uuid4()}/delete"]
)
async def test_anonymous_visitors_are_sent_to_sign_in(app, path: str) -> None:  # type: ignore[no-untyped-def]
    async with browser_client(app, None) as (http, _):
        response = await http.get(path)
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == f"/{path.split('/')[1]}/login"
    assert parse_qs(target.query)["next"] == [path]


async def test_anonymous_form_post_is_sent_to_sign_in(app) -> None:  # type: ignore[no-untyped-def]
    async with browser_client(app, None) as (http, _):
        response = await http.post("/en/bots/new", data={"name": "x"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/en/login?next=")


@pytest.mark.parametrize("lang", LANGS)
async def test_empty_dashboard(app, client: httpx.AsyncClient, lang: str) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    async with browser_client(app, owner) as (http, _):
        response = await http.get(f"/{lang}/dashboard")
    assert response.status_code == 200
    assert 'class="empty-state"' in response.text
    assert f'href="/{lang}/bots/new"' in response.text
    assert f'<html lang="{lang}">' in response.text


async def test_dashboard_page_far_past_the_end_is_empty(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    await make_bot(client, owner)
    async with browser_client(app, owner) as (http, _):
        response = await http.get("/en/dashboard", params={"page": str(10**20)})
    assert response.status_code == 200
    assert 'class="empty-state"' in response.text and 'href="/en/dashboard"' in response.text


@pytest.mark.parametrize("lang", LANGS)
async def test_dashboard_lists_bots_with_status(app, client: httpx.AsyncClient, lang: str) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, plan="business")
    on = await make_bot(client, owner, name="Bakery <helper>")
    off = await make_bot(client, owner, name="Returns desk", is_enabled=False)
    async with browser_client(app, owner) as (http, _):
        response = await http.get(f"/{lang}/dashboard")
    assert response.status_code == 200
    assert "Bakery &lt;helper&gt;" in response.text  # escaped
    assert f"/{lang}/bots/{on['id']}" in response.text and f"/{lang}/bots/{off['id']}" in response.text
    assert "badge badge-on" in response.text and "badge badge-off" in response.text
    assert 'class="empty-state"' not in response.text


@pytest.mark.parametrize("lang", LANGS)
async def test_new_bot_form_and_bot_page_render(app, client: httpx.AsyncClient, lang: str) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner, allowed_origins=["https://a.example", "https://b.example"])
    async with browser_client(app, owner) as (http, browser):
        new = await http.get(f"/{lang}/bots/new")
        page = await http.get(f"/{lang}/bots/{bot['id']}")
        confirm = await http.get(f"/{lang}/bots/{bot['id']}/delete")
    assert browser is not None
    assert new.status_code == 200
    assert f'value="{browser.csrf_token}"' in new.text
    assert f'<option value="{lang}" selected>' in new.text  # the new bot defaults to the page language
    assert page.status_code == 200
    assert f'value="{browser.csrf_token}"' in page.text
    assert "https://a.example\nhttps://b.example</textarea>" in page.text
    for key in ("knowledge", "channels", "console", "widget"):
        assert f'id="section-{key}"' in page.text and f'href="#section-{key}"' in page.text
    assert f'href="/{lang}/bots/{bot["id"]}/delete"' in page.text
    assert confirm.status_code == 200
    assert f'action="/{lang}/bots/{bot["id"]}/delete"' in confirm.text


async def test_create_through_the_form(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        form = {
            "csrf_token": browser.csrf_token,
            "name": "Form bot",
            "description": "Made in the browser",
            "language": "uz",
            "instructions": "Be brief.",
            "welcome_message": "Hello",
            "fallback_message": "Sorry",
        }
        response = await http.post("/en/bots/new", data=form)
        assert response.status_code == 303
        bot_id = created_bot_id(response)
        page = await http.get(response.headers["location"])
    assert page.status_code == 200
    assert "alert alert-success" in page.text
    bot = (await client.get(f"/api/v1/bots/{bot_id}", headers=owner.headers)).json()
    assert bot["name"] == "Form bot" and bot["language"] == "uz"
    assert bot["strict"] is False  # the checkbox was not ticked


async def test_form_errors_are_shown_beside_the_fields(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        response = await http.post(
            "/ru/bots/new", data={"csrf_token": browser.csrf_token, "name": " ", "language": "xx", "strict": "on"}
        )
    assert response.status_code == 422
    assert response.text.count('class="field-error"') == 2
    assert 'id="f-name-error"' in response.text and 'id="f-language-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert 'name="strict" type="checkbox" value="on" checked' in response.text  # what was typed is kept


async def test_form_without_csrf_token_is_refused(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    async with browser_client(app, owner) as (http, _):
        response = await http.post("/en/bots/new", data={"name": "No token"})
    assert response.status_code == 403
    assert (await client.get("/api/v1/bots", headers=owner.headers)).json()["total"] == 0


async def test_plan_limit_is_shown_on_the_form(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        form = await http.get("/en/bots/new")
        refused = await http.post(
            "/en/bots/new", data={"csrf_token": browser.csrf_token, "name": "Second", "language": "en"}
        )
        dashboard = await http.get("/en/dashboard")
    assert "alert alert-error" in form.text
    assert refused.status_code == 402
    assert "alert alert-error" in refused.text
    assert 'href="/en/pricing"' in dashboard.text


async def test_edit_through_the_form(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    form = {
        "name": "Edited",
        "description": "New description",
        "language": "ru",
        "instructions": "Talk like a pirate.",
        "welcome_message": "Ahoy",
        "fallback_message": "Arr",
        "is_enabled": "on",
        "allowed_origins": "https://Shop.example/\r\n\r\nhttps://shop.example\r\nhttp://localhost:3000\r\n",
        "widget_color": "#112233",
        "widget_position": "left",
        "widget_title": "Chat with us",
        "widget_greeting": "Questions?",
        "widget_language": "",
    }
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        response = await http.post(f"/en/bots/{bot['id']}", data={**form, "csrf_token": browser.csrf_token})
        assert response.status_code == 303
        assert response.headers["location"] == f"/en/bots/{bot['id']}?done=saved"
    saved = (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).json()
    assert saved["name"] == "Edited" and saved["language"] == "ru" and saved["strict"] is False
    assert saved["allowed_origins"] == ["https://shop.example", "http://localhost:3000"]
    assert saved["widget"] == {
        "color": "#112233",
        "title": "Chat with us",
        "position": "left",
        "greeting": "Questions?",
        "language": None,
    }


async def test_edit_errors_name_the_bad_origin(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        response = await http.post(
            f"/en/bots/{bot['id']}",
            data={
                "csrf_token": browser.csrf_token,
                "name": "Still fine",
                "language": "en",
                "allowed_origins": "https://ok.example\nhttps://bad.example/shop",
                "widget_color": "not-a-colour",
                "widget_position": "right",
            },
        )
    assert response.status_code == 422
    assert "https://bad.example/shop: Enter a website address" in response.text
    assert 'id="f-widget_color-error"' in response.text
    assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).json()["name"] != "Still fine"


async def test_avatar_upload_and_removal_through_the_page(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        token = {"csrf_token": browser.csrf_token}
        fake = await http.post(
            f"/en/bots/{bot['id']}/avatar", data=token, files={"file": ("a.png", b"plain text", "image/png")}
        )
        assert fake.status_code == 422
        assert 'id="f-file-error"' in fake.text
        uploaded = await http.post(
            f"/en/bots/{bot['id']}/avatar", data=token, files={"file": ("a.jpg", image_bytes("JPEG"), "image/jpeg")}
        )
        assert uploaded.status_code == 303
        page = await http.get(uploaded.headers["location"])
        assert f'src="/bots/{bot["public_id"]}/avatar?v=1"' in page.text
        removed = await http.post(f"/en/bots/{bot['id']}/avatar/delete", data=token)
        assert removed.status_code == 303
        page = await http.get(f"/en/bots/{bot['id']}")
        assert f"/bots/{bot['public_id']}/avatar" not in page.text


async def test_delete_asks_first_then_deletes(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner, name="Doomed bot")
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        confirm = await http.get(f"/ru/bots/{bot['id']}/delete")
        assert confirm.status_code == 200
        assert "Doomed bot" in confirm.text
        assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).status_code == 200
        deleted = await http.post(f"/ru/bots/{bot['id']}/delete", data={"csrf_token": browser.csrf_token})
        assert deleted.status_code == 303
        assert deleted.headers["location"] == "/ru/dashboard?done=deleted"
        dashboard = await http.get(deleted.headers["location"])
    assert "alert alert-success" in dashboard.text
    assert 'class="empty-state"' in dashboard.text
    assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).status_code == 404


async def test_viewer_gets_a_read_only_page(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    viewer = await make_account(client)
    await add_tenant_member(owner.tenant_id, viewer, "viewer")
    # The viewer's first workspace is their own; the shared one is reached with the tenant header.
    async with browser_client(app, viewer) as (http, browser):
        assert browser is not None
        http.headers["X-Tenant-Id"] = owner.tenant_id
        page = await http.get(f"/en/bots/{bot['id']}")
        assert page.status_code == 200
        assert '<fieldset class="stack" disabled>' in page.text
        assert f"/en/bots/{bot['id']}/delete" not in page.text
        assert 'class="form mt-4"' not in page.text  # no avatar upload
        refused = await http.post(f"/en/bots/{bot['id']}", data={"csrf_token": browser.csrf_token, "name": "X"})
        assert refused.status_code == 403
        assert (await http.get(f"/en/bots/{bot['id']}/delete")).status_code == 403
        assert (await http.get("/en/bots/new")).status_code == 403


async def test_other_tenants_bot_page_is_404(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    owner = await make_account(client)
    bot = await make_bot(client, owner, name="Secret name")
    stranger = await make_account(client)
    async with browser_client(app, stranger) as (http, _):
        for path in (f"/en/bots/{bot['id']}", f"/en/bots/{bot['id']}/delete", "/en/bots/not-a-uuid"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert "Secret name" not in response.text
