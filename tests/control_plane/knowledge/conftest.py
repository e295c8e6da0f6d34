"""Loopback websites for the fetch and crawl tests.

Two small Starlette sites run on 127.0.0.1 for the whole session (two ports are two origins, so each has its own
robots.txt): ``website`` is found by following links, ``sitemap_website`` publishes a sitemap index. Each records the
paths it served so tests can prove a page was never requested (robots.txt, refused redirects, skipped assets).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.server import FakeServer

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/prices">Prices</a></nav></header>
<main>{body}</main>
<footer><p>© Acme Tea. All rights reserved.</p></footer>
</body></html>"""


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(LAYOUT.format(title=title, body=body))


@dataclass
class Website:
    """A running loopback site and the paths it has served since the last ``reset()``."""

    server: FakeServer
    hits: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def port(self) -> int:
        return self.server.port

    def reset(self) -> None:
        self.hits.clear()


def _recording(app: Starlette, hits: list[str]) -> ASGIApp:
    """Wrap ``app`` so every request's path (with its raw query) is appended to ``hits``."""

    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            hits.append(scope["path"] + (f"?{query}" if query else ""))
        await app(scope, receive, send)

    return recorded


def links_site(hits: list[str]) -> ASGIApp:
    """A tea shop without a sitemap: pages link to each other, robots.txt closes /private."""

    async def home(request: Request) -> Response:
        return page(
            "Acme Tea",
            """<h1>Acme Tea</h1>
            <p>Acme Tea sells green and black tea from the Fergana valley. Every pack is sealed at the farm and
            shipped within two days of your order, anywhere in Uzbekistan.</p>
            <ul>
              <li><a href="/about#team">Our team</a></li>
              <li><a href="/prices?b=2&amp;a=1">Prices</a> and <a href="/prices?a=1&amp;b=2">the same prices</a></li>
              <li><a href="/contact?utm_source=home">Contact</a></li>
              <li><a href="/go-about">About (old link)</a></li>
              <li><a href="/private/secret">Staff only</a></li>
              <li><a href="/logo.png">Logo</a></li>
              <li><a href="http://elsewhere.invalid/page">Partner</a></li>
              <li><a href="mailto:shop@acme.test">Mail us</a></li>
            </ul>""",
        )

    async def about(request: Request) -> Response:
        return page(
            "About Acme Tea",
            """<h1>About us</h1><p>We are a family business founded in 1998 in Tashkent. Our tea masters taste every
            harvest before it reaches the shelf, and we visit each farm we buy from at least once a year.</p>""",
        )

    async def prices(request: Request) -> Response:
        return page(
            "Prices",
            """<h1>Prices</h1><p>All prices include VAT and are given in Uzbek so'm for a single pack.</p>
            <table><tr><th>Item</th><th>Price</th></tr>
            <tr><td>Green tea 100 g</td><td>45 000</td></tr><tr><td>Black tea 250 g</td><td>60 000</td></tr></table>""",
        )

    async def contact(request: Request) -> Response:
        return page("Contact", "<h1>Contact</h1><p>Call us on +998 71 200 00 00 from 9:00 to 18:00.</p>")

    async def private(request: Request) -> Response:
        return page("Private", "<p>Internal price list for staff.</p>")

    async def robots(request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /private\n")

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def chain(request: Request) -> Response:
        left = int(request.path_params["left"])
        if left == 0:
            return page("End of chain", "<p>You followed every redirect to the end of the chain.</p>")
        return RedirectResponse(f"/chain/{left - 1}", status_code=301)

    async def echo(request: Request) -> Response:
        host = request.headers.get("host", "")
        agent = request.headers.get("user-agent", "")
        return PlainTextResponse(f"host={host}\nuser-agent={agent}\n")

    async def big_declared(request: Request) -> Response:
        return HTMLResponse("<p>" + "x" * 300_000 + "</p>")

    async def big_stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"<html><body>"
            for _ in range(4096):  # 256 MB if nobody stops reading
                yield b"y" * 65536

        return StreamingResponse(chunks(), media_type="text/html")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.5)
        return page("Slow", "<p>Finally.</p>")

    async def image(request: Request) -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, media_type="image/png")

    async def price_csv(request: Request) -> Response:
        return Response("Item,Price\nGreen tea,45000\nBlack tea,60000\n", media_type="text/csv")

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/about", about),
            Route("/go-about", lambda request: RedirectResponse("/about", status_code=301)),
            Route("/prices", prices),
            Route("/contact", contact),
            Route("/private/{rest:path}", private),
            Route("/robots.txt", robots),
            Route("/redirect", redirect),
            Route("/chain/{left:int}", chain),
            Route("/echo", echo),
            Route("/big-declared", big_declared),
            Route("/big-stream", big_stream),
            Route("/slow", slow),
            Route("/logo.png", image),
            Route("/image", image),
            Route("/prices.csv", price_csv),
        ]
    )
    return _recording(app, hits)


def sitemap_site(hits: list[str]) -> ASGIApp:
    """A site with a sitemap index (announced in robots.txt) and rules written for our bot by name."""

    def url(request: Request, path: str) -> str:
        return str(request.base_url).rstrip("/") + path

    async def robots(request: Request) -> Response:
        # The "*" group shuts out every other crawler; ours has its own group, which is the one that applies.
        return PlainTextResponse(
            "User-agent: *\nDisallow: /\n\n"
            "User-agent: BotFactoryBot\nDisallow: /hidden\n\n"
            f"Sitemap: {url(request, '/sitemap_index.xml')}\n"
        )

    async def sitemap_index(request: Request) -> Response:
        body = f"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>{url(request, "/sitemap-pages.xml")}</loc></sitemap>
  <sitemap><loc>http://elsewhere.invalid/sitemap.xml</loc></sitemap>
</sitemapindex>"""
        return Response(body, media_type="application/xml")

    async def sitemap_pages(request: Request) -> Response:
        locs = ["/", "/p1", "/p2", "/hidden", "/p1#top", "/p2?utm_campaign=spring"]
        entries = "".join(f"<url><loc>{url(request, loc)}</loc></url>" for loc in locs)
        entries += "<url><loc>http://elsewhere.invalid/page</loc></url>"
        body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
        return Response(body, media_type="application/xml")

    def text_page(title: str, text: str, links: str = "") -> Response:
        return page(title, f"<h1>{title}</h1><p>{text}</p>{links}")

    async def home(request: Request) -> Response:
        return text_page(
            "Sitemap shop",
            "The sitemap shop lists every page in its sitemap, so crawlers never need to guess where things are.",
            '<p><a href="/p3">A page that only a link points to</a></p>',
        )

    async def numbered(request: Request) -> Response:
        number = request.path_params["number"]
        return text_page(
            f"Page {number}",
            f"This is page number {number} of the sitemap shop. It describes product line {number} in detail, "
            "with the sizes, the colours and the delivery times that apply to it.",
        )

    async def hidden(request: Request) -> Response:
        return text_page("Hidden", "Nobody should read this page; robots.txt closes it to BotFactoryBot.")

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/p{number:int}", numbered),
            Route("/hidden", hidden),
            Route("/robots.txt", robots),
            Route("/sitemap_index.xml", sitemap_index),
            Route("/sitemap-pages.xml", sitemap_pages),
        ]
    )
    return _recording(app, hits)


@pytest.fixture(scope="session")
def _links_server() -> Iterator[Website]:
    hits: list[str] = []
    with FakeServer(links_site(hits)) as server:
        yield Website(server=server, hits=hits)


@pytest.fixture(scope="session")
def _sitemap_server() -> Iterator[Website]:
    hits: list[str] = []
    with FakeServer(sitemap_site(hits)) as server:
        yield Website(server=server, hits=hits)


@pytest.fixture
def website(_links_server: Website) -> Website:
    """The link-crawled tea shop, with its request log cleared."""
    _links_server.reset()
    return _links_server


@pytest.fixture
def sitemap_website(_sitemap_server: Website) -> Website:
    """The sitemap-driven shop, with its request log cleared."""
    _sitemap_server.reset()
    return _sitemap_server
