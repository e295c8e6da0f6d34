"""The website widget in a real browser (Debian's Chromium driven by Playwright for Python).

A plain HTML page on another origin (a static server on another port) embeds the widget with the exact embed
code; the app is served by uvicorn and the tenant's real runtime core runs in this process, answering with the
offline answerer over a small knowledge artifact. The visitor opens the chat, asks, gets the answer, reloads and
still sees the conversation; Esc closes; a phone gets a full-screen chat; a page on an origin that is not allowed
gets no chat and cannot send.

Skipped (with the reason) only when /usr/bin/chromium or the playwright package is missing. Playwright's own
browser download is never used: Chromium comes from the system (``apt-get install chromium``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bot_runtime import contract
from bot_runtime.answering import KnowledgeIndex, chunk_faq
from bot_runtime.i18n import translations_for
from bot_runtime.runtime import Runtime, RuntimeSettings
from control_plane.widget.errors import OriginRefused
from tests.control_plane.widget.helpers import free_port, live_app, make_widget_bot, publish_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FAQ = [
    ("Do you deliver to Samarkand?", "Yes, we deliver to Samarkand in two days."),
    ("What are your opening hours?", "We are open every day from 9:00 to 21:00."),
]
WAIT_MS = 15_000

# Hostile page styles: none of them may reach inside the widget, and the widget's may not reach the page.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Plain shop page</title>
  <style>
    button {{ display: none !important; }}
    * {{ font-family: "Comic Sans MS", cursive !important; }}
    textarea {{ border: 9px solid red !important; }}
  </style>
</head>
<body>
  <h1>A plain shop page</h1>
  <div class="bf-root" id="page-own">the page's own element with a widget class name</div>
  {snippet}
</body>
</html>
"""


def playwright_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright import async_api
    except ImportError:
        pytest.skip("the playwright package is missing: pip install playwright (no `playwright install` needed)")
    return async_api


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path, port: int) -> Iterator[None]:
    """A plain file server (the customer's website) on 127.0.0.1:port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


async def store_artifact(bot_id: str) -> None:
    index = KnowledgeIndex.build(chunk_faq(FAQ, source_id="faq", language="en"))
    binary = Redis.from_url(os.environ["REDIS_URL"])
    try:
        await binary.set(contract.artifact_key(bot_id, 1), index.to_bytes())
    finally:
        await binary.aclose()


@contextlib.asynccontextmanager
async def tenant_runtime(tenant_id: str) -> Any:
    """The tenant's real runtime core, in this event loop (what `python -m bot_runtime --tenant` runs)."""
    subject = Runtime(RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"], idle_seconds=0))
    task = asyncio.create_task(subject.run())
    try:
        yield subject
    finally:
        subject.stop(0, "test over")
        await asyncio.wait_for(task, 10)


def shadow(selector: str) -> str:
    """JS reading inside the widget's shadow root (for checks Playwright's locators don't express)."""
    return f"document.querySelector('[data-botfactory-widget]').shadowRoot.querySelector({selector!r})"


async def test_the_widget_on_a_plain_page_of_another_origin(app, client: httpx.AsyncClient, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async_api = playwright_or_skip()
    site_port = free_port()
    site = f"http://127.0.0.1:{site_port}"
    refused_site = f"http://localhost:{site_port}"  # same server, another origin, not on the list
    wb = await make_widget_bot(
        client,
        origins=[site],
        welcome_message="Hi! Ask me about delivery.",
        widget={"color": "#0f766e", "title": "Shop assistant", "greeting": "Questions? Ask me!"},
    )
    await store_artifact(wb.id)
    await publish_config(wb.tenant_id, artifact_versions={wb.id: 1})

    async with live_app(app) as base, tenant_runtime(wb.tenant_id), async_api.async_playwright() as pw:
        snippet = f'<script src="{base}/widget.js" data-bot="{wb.public_id}" async></script>'
        (tmp_path / "index.html").write_text(PAGE.format(snippet=snippet), encoding="utf-8")
        with static_site(tmp_path, site_port):
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                await _chat_reload_and_close(browser, site)
                await _phone_gets_a_full_screen_chat(browser, site)
                await _other_origin_is_refused(browser, refused_site, base, wb.public_id)
            finally:
                await browser.close()


async def _chat_reload_and_close(browser: Any, site: str) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(site + "/")
    launcher = page.locator("button.bf-launcher")
    await launcher.wait_for(timeout=WAIT_MS)
    en = translations_for("en")
    assert await launcher.get_attribute("aria-label") == en.gettext("Open chat")
    assert await launcher.get_attribute("aria-expanded") == "false"
    await page.locator(".bf-greeting-text", has_text="Questions? Ask me!").wait_for()
    # The page's `button { display: none !important }` and fonts stay outside; the widget's styles stay inside.
    assert await page.evaluate(f"getComputedStyle({shadow('.bf-launcher')}).display") == "flex"  # a flex item
    assert "Comic" not in await page.evaluate(f"getComputedStyle({shadow('.bf-root')}).fontFamily")
    assert await page.evaluate("getComputedStyle(document.getElementById('page-own')).position") == "static"
    assert await page.evaluate(f"getComputedStyle({shadow('.bf-launcher')}).backgroundColor") == "rgb(15, 118, 110)"

    await launcher.click()
    panel = page.locator("section.bf-panel")
    await panel.wait_for(state="visible")
    assert await launcher.get_attribute("aria-expanded") == "true"
    assert await page.locator(".bf-title").inner_text() == "Shop assistant"
    await page.locator(".bf-message.bf-bot", has_text="Hi! Ask me about delivery.").wait_for()
    textarea = page.locator("textarea.bf-input")
    assert await page.evaluate(f"{shadow('.bf-root')}.getRootNode().activeElement.className") == "bf-input"
    await textarea.fill("Do you deliver to Samarkand?")
    await textarea.press("Enter")
    await page.locator(".bf-message.bf-visitor", has_text="Do you deliver to Samarkand?").wait_for()
    await page.locator(".bf-message.bf-bot", has_text="in two days").wait_for(timeout=WAIT_MS)
    await textarea.fill("What are your opening hours?")
    await page.locator("button.bf-send").click()
    await page.locator(".bf-message.bf-bot", has_text="from 9:00 to 21:00").wait_for(timeout=WAIT_MS)

    # A reload keeps the conversation (from the server, by the visitor id in localStorage) and the open chat.
    await page.reload()
    await page.locator(".bf-message.bf-bot", has_text="in two days").wait_for(timeout=WAIT_MS)
    await page.locator(".bf-message.bf-bot", has_text="from 9:00 to 21:00").wait_for(timeout=WAIT_MS)
    texts = await page.locator(".bf-message").all_inner_texts()
    assert texts == [
        "Do you deliver to Samarkand?",
        "Yes, we deliver to Samarkand in two days.",
        "What are your opening hours?",
        "We are open every day from 9:00 to 21:00.",
    ]

    # Esc closes and gives the focus back to the button.
    await textarea.focus()
    await page.keyboard.press("Escape")
    await panel.wait_for(state="hidden")
    assert await page.evaluate(f"{shadow('.bf-root')}.getRootNode().activeElement.className") == "bf-launcher"
    assert errors == []
    await context.close()


async def _phone_gets_a_full_screen_chat(browser: Any, site: str) -> None:
    # Reduced motion also switches the opening animation off, so the panel is measured where it ends up.
    context = await browser.new_context(
        viewport={"width": 375, "height": 700}, is_mobile=True, has_touch=True, locale="ru-RU", reduced_motion="reduce"
    )
    page = await context.new_page()
    await page.goto(site + "/")
    launcher = page.locator("button.bf-launcher")
    await launcher.wait_for(timeout=WAIT_MS)
    # The visitor's browser language picks the interface language (translated on the server).
    assert await launcher.get_attribute("aria-label") == translations_for("ru").gettext("Open chat")
    await launcher.tap()
    panel = page.locator("section.bf-panel")
    await panel.wait_for(state="visible")
    box = await panel.bounding_box()
    assert box is not None and (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 375, 700)
    assert not await launcher.is_visible()  # hidden under the full-screen chat
    await page.locator("button.bf-close").tap()
    await panel.wait_for(state="hidden")
    await context.close()


async def _other_origin_is_refused(browser: Any, refused_site: str, base: str, public_id: str) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text))
    await page.goto(refused_site + "/")
    expected = translations_for("en").gettext(OriginRefused.message)
    for _ in range(100):
        if any(expected in text for text in warnings):
            break
        await asyncio.sleep(0.1)
    assert any(expected in text for text in warnings), warnings
    assert await page.locator("[data-botfactory-widget]").count() == 0
    # The page can't send either: the preflight is refused, so the browser blocks the request.
    outcome = await page.evaluate(
        """async ([url]) => {
            try {
                const body = {visitor_id: "aaaaaaaaaaaaaaaaaaaaaa", text: "hi", client_message_id: "bbbbbbbbbb"};
                const response = await fetch(url, {
                    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
                return "status " + response.status;
            } catch (err) {
                return "blocked";
            }
        }""",
        [f"{base}/api/v1/widget/{public_id}/messages"],
    )
    assert outcome == "blocked"
    await context.close()
