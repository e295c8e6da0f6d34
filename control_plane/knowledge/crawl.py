"""Crawl one website into knowledge-base pages: same site only, breadth first, robots.txt respected.

The crawl starts from the given URL. When the site publishes a sitemap (``/sitemap.xml``, a sitemap index, or the
``Sitemap:`` lines of robots.txt), its pages are the crawl list; otherwise links found in pages are followed. Only
URLs with the start page's scheme and host (after the start page's own redirects, so ``example.com`` →
``www.example.com`` works) are visited, asset links (images, scripts, archives ...) are skipped, and URLs are
de-duplicated after normalisation (no fragment, sorted query, no tracking parameters). Every request goes through
:class:`~control_plane.knowledge.fetch.SafeFetcher`, so the crawl cannot be steered to internal addresses.

    pages = await crawl("https://shop.example/", max_pages=50, max_bytes_total=20_000_000,
                        allow_loopback=False, timeout=15, progress=report)
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpcore

from bot_runtime.i18n import N_
from control_plane.knowledge.extract import (
    ExtractedDocument,
    ExtractionError,
    content_hash,
    decode_html,
    extract_html,
)
from control_plane.knowledge.fetch import (
    ANY_CONTENT_TYPE,
    HTML_CONTENT_TYPES,
    INVALID_URL,
    FetchedPage,
    FetchError,
    Resolver,
    SafeFetcher,
    check_url,
)

__all__ = ["CrawledPage", "ProgressCallback", "crawl", "normalize_url"]

log = logging.getLogger("botfactory.knowledge")

ProgressCallback = Callable[[int, int], Awaitable[None]]

DEFAULT_MAX_PAGE_BYTES = 5 * 1024 * 1024
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 asks crawlers to read at least 500 KiB
SITEMAP_MAX_BYTES = 10 * 1024 * 1024
MAX_SITEMAPS = 20
SITEMAP_CONTENT_TYPES = frozenset(
    {"application/xml", "text/xml", "application/gzip", "application/x-gzip", "text/plain", "application/octet-stream"}
)

NO_PAGES = N_("No pages with text were found on this site.")
ROBOTS_DISALLOWED = N_("The site's robots.txt does not allow reading this page.")
ROBOTS_UNAVAILABLE = N_("The site's robots.txt could not be read (HTTP %(status)s), so the site was not crawled.")

_ASSET_EXTENSIONS = frozenset(
    "7z aac apk avi bin bmp css csv dmg doc docx eot exe flac gif gz ico iso jpeg jpg js json m4a mkv mov mp3 mp4 "
    "mpeg mpg odt ogg otf pdf png ppt pptx rar rss svg tar tgz tif tiff ttf txt wav webm webp wmv woff woff2 xls "
    "xlsx xml zip atom".split()
)
_TRACKING_PARAMS = frozenset({"fbclid", "gclid", "yclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl"})


@dataclass(frozen=True, slots=True)
class CrawledPage:
    """One page of the site with text: its final URL, title and extracted blocks."""

    url: str
    title: str
    document: ExtractedDocument


def normalize_url(url: str) -> str | None:
    """Canonical form for de-duplication: lower-case scheme and host, no default port, no fragment, ``/`` for an
    empty path, query parameters sorted and tracking parameters (``utm_*``, ``fbclid`` ...) removed.

    Returns None for anything that is not an http(s) URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host = f"{host}:{port}"
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith("utm_") and key.lower() not in _TRACKING_PARAMS
    )
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_asset(url: str) -> bool:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    return suffix in _ASSET_EXTENSIONS


def _page_links(html: str, base_url: str) -> tuple[list[str], set[str]]:
    """Absolute link targets of a page, and its robots meta directives (``noindex``, ``nofollow``)."""
    from lxml import etree
    from lxml import html as lxml_html

    try:
        document = lxml_html.document_fromstring(html.encode("utf-8"), parser=lxml_html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):
        return [], set()
    base = base_url
    base_element = document.find(".//base[@href]")
    if base_element is not None:
        base = urljoin(base_url, base_element.get("href", "").strip())
    directives: set[str] = set()
    for meta in document.iter("meta"):
        if (meta.get("name") or "").strip().lower() in ("robots", "botfactorybot"):
            directives.update(token.strip().lower() for token in (meta.get("content") or "").split(","))
    links: list[str] = []
    for anchor in document.iter("a", "area"):
        href = (anchor.get("href") or "").strip()
        if not href or href.startswith(("#", "mailto:", "tel:", "javascript:", "data:")):
            continue
        try:
            links.append(urljoin(base, href))
        except ValueError:
            continue
    return links, directives


def _parse_sitemap(data: bytes) -> tuple[str, list[str]]:
    """(``"index"`` or ``"urlset"``, the ``<loc>`` URLs) of an XML, gzipped XML or plain-text sitemap."""
    from lxml import etree

    if data[:2] == b"\x1f\x8b":
        try:
            # The cap keeps a gzip bomb from inflating past the size we would accept uncompressed.
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, SITEMAP_MAX_BYTES)
        except zlib.error:
            return "urlset", []
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped.startswith(b"<"):
        lines = stripped.decode("utf-8", errors="replace").splitlines()
        return "urlset", [line.strip() for line in lines if line.strip().startswith(("http://", "https://"))]
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(stripped, parser=parser)
    except etree.XMLSyntaxError:
        return "urlset", []
    if root is None or not isinstance(root.tag, str):
        return "urlset", []
    kind = etree.QName(root).localname.lower()
    locs = [(node.text or "").strip() for node in root.iter("{*}loc", "loc") if (node.text or "").strip()]
    return ("index" if kind == "sitemapindex" else "urlset"), locs


class _Crawl:
    """The state of one crawl; :func:`crawl` is the public entry point."""

    def __init__(
        self,
        fetcher: SafeFetcher,
        *,
        max_pages: int,
        max_bytes_total: int,
        max_page_bytes: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.fetcher = fetcher
        self.max_pages = max_pages
        self.budget = max_bytes_total
        self.max_page_bytes = max_page_bytes
        self.progress = progress
        self.user_agent = fetcher.user_agent
        self.origin = ""
        self.robots = RobotFileParser()
        self.seen: set[str] = set()  # every URL queued or visited, normalised
        self.queue: deque[str] = deque()
        self.pages: list[CrawledPage] = []
        self.hashes: set[str] = set()
        self.attempts = 0
        self.max_attempts = max(max_pages * 3, max_pages + 20)

    def same_site(self, url: str) -> bool:
        return _origin(url) == self.origin

    def enqueue(self, urls: Iterable[str]) -> None:
        for url in urls:
            normalized = normalize_url(url)
            if not normalized or normalized in self.seen or not self.same_site(normalized) or _is_asset(normalized):
                continue
            self.seen.add(normalized)
            if self.allowed(normalized):
                self.queue.append(normalized)

    async def report(self) -> None:
        if self.progress is not None:
            done = len(self.pages)
            await self.progress(done, max(done, min(self.max_pages, done + len(self.queue))))

    async def get(
        self, url: str, *, max_bytes: int, accept: frozenset[str], follow: Callable[[str], bool] | None = None
    ) -> FetchedPage:
        limit = max(1, min(max_bytes, self.budget))
        page = await self.fetcher.fetch(url, max_bytes=limit, accept=accept, follow=follow)
        self.budget -= len(page.data)
        return page

    def follow_redirect(self, target: str) -> bool:
        """Follow a page's redirect only to a page of this site that robots.txt allows and we have not read."""
        normalized = normalize_url(target)
        if not normalized or normalized in self.seen or not self.same_site(normalized):
            return False
        return self.allowed(normalized)

    async def load_robots(self, origin: str) -> None:
        """Read ``origin/robots.txt`` the way RFC 9309 says: 4xx = no rules, 5xx = crawl nothing."""
        robots = RobotFileParser(origin + "/robots.txt")
        try:
            page = await self.get(origin + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES, accept=ANY_CONTENT_TYPE)
        except FetchError as exc:
            if exc.status is not None and exc.status >= 500:
                raise FetchError(
                    ROBOTS_UNAVAILABLE, code="robots_unavailable", params={"status": exc.status}, status=exc.status
                ) from exc
            if exc.status is None and exc.code not in ("too_large", "content_type"):
                raise  # the site itself is unreachable or refused; the page fetch would fail the same way
            robots.parse([])
        else:
            robots.parse(page.data.decode("utf-8", errors="replace").splitlines())
        self.robots = robots
        self.origin = origin

    def allowed(self, url: str) -> bool:
        return self.robots.can_fetch(self.user_agent, url)

    def add_page(self, page: FetchedPage, *, follow_links: bool) -> None:
        html = decode_html(page.data, page.charset)
        links, directives = _page_links(html, page.url)
        if follow_links and "nofollow" not in directives and "none" not in directives:
            self.enqueue(links)
        if "noindex" in directives or "none" in directives or len(self.pages) >= self.max_pages:
            return
        document = extract_html(html, page.url)
        if not document.blocks:
            return
        digest = content_hash(document.text.encode("utf-8"))
        if digest in self.hashes:
            return  # the same page under another URL
        self.hashes.add(digest)
        self.pages.append(CrawledPage(url=page.url, title=document.title, document=document))

    async def read_sitemaps(self, urls: Iterable[str], *, fetched: FetchedPage | None = None) -> list[str]:
        """Page URLs listed by the given sitemaps (following sitemap indexes), same site only, in order.

        ``fetched`` is a sitemap already downloaded (the start URL), read without fetching it again.
        """
        pending = deque(u for u in (normalize_url(url) for url in urls) if u and self.same_site(u))
        visited: set[str] = set()
        found: list[str] = []
        found_set: set[str] = set()
        limit = self.max_attempts
        while pending and len(visited) < MAX_SITEMAPS and len(found) < limit and self.budget > 0:
            url = pending.popleft()
            if url in visited:
                continue
            visited.add(url)
            if fetched is not None and normalize_url(fetched.url) == url:
                page, fetched = fetched, None
            else:
                try:
                    page = await self.get(url, max_bytes=SITEMAP_MAX_BYTES, accept=SITEMAP_CONTENT_TYPES)
                except FetchError as exc:
                    log.info("knowledge.crawl.sitemap_skipped", extra={"url": url, "reason": exc.code})
                    continue
            kind, locs = _parse_sitemap(page.data)
            for loc in locs:
                normalized = normalize_url(loc)
                if not normalized or not self.same_site(normalized):
                    continue
                if kind == "index":
                    pending.append(normalized)
                elif normalized not in found_set:
                    found_set.add(normalized)
                    found.append(normalized)
        return found[:limit]

    async def run(self, start: str) -> list[CrawledPage]:
        await self.load_robots(_origin(start))
        if not self.allowed(start):
            raise FetchError(ROBOTS_DISALLOWED, code="robots_disallowed")
        self.seen.add(start)
        page = await self.get(start, max_bytes=self.max_page_bytes, accept=HTML_CONTENT_TYPES | SITEMAP_CONTENT_TYPES)
        final = normalize_url(page.url) or start
        if _origin(final) != self.origin:
            # The start page moved (http → https, example.com → www.example.com): the site is where it landed.
            await self.load_robots(_origin(final))
            if not self.allowed(final):
                raise FetchError(ROBOTS_DISALLOWED, code="robots_disallowed")
        self.seen.add(final)
        self.attempts += 1

        sitemap_pages: list[str]
        if page.is_html:
            self.add_page(page, follow_links=True)
            sitemaps = self.robots.site_maps() or [self.origin + "/sitemap.xml"]
            sitemap_pages = await self.read_sitemaps(sitemaps)
        else:
            # The start URL is itself a sitemap.
            sitemap_pages = await self.read_sitemaps([final], fetched=page)
        follow_links = not sitemap_pages
        if sitemap_pages:
            self.queue.clear()
            self.enqueue(sitemap_pages)
        await self.report()

        while self.queue and len(self.pages) < self.max_pages and self.attempts < self.max_attempts:
            if self.budget <= 0:
                log.info("knowledge.crawl.budget_spent", extra={"origin": self.origin})
                break
            url = self.queue.popleft()
            if not self.allowed(url):
                continue
            self.attempts += 1
            try:
                fetched = await self.get(
                    url, max_bytes=self.max_page_bytes, accept=HTML_CONTENT_TYPES, follow=self.follow_redirect
                )
            except FetchError as exc:
                if exc.code == "too_large" and self.budget < self.max_page_bytes:
                    log.info("knowledge.crawl.budget_spent", extra={"origin": self.origin})
                    break  # what is left of the byte budget is smaller than the next page
                log.info("knowledge.crawl.page_skipped", extra={"url": url, "reason": exc.code})
                await self.report()
                continue
            if landed := normalize_url(fetched.url):
                self.seen.add(landed)
            self.add_page(fetched, follow_links=follow_links)
            await self.report()

        if not self.pages:
            raise ExtractionError(NO_PAGES, code="no_text")
        if self.progress is not None:
            await self.progress(len(self.pages), len(self.pages))
        return self.pages


async def crawl(
    start_url: str,
    *,
    max_pages: int,
    max_bytes_total: int,
    allow_loopback: bool,
    timeout: float,  # noqa: ASYNC109 - the per-request budget handed to every fetch
    progress: ProgressCallback | None = None,
    max_page_bytes: int | None = None,
    user_agent: str | None = None,
    resolver: Resolver | None = None,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> list[CrawledPage]:
    """Crawl the site of ``start_url`` and return its pages with text, the start page first.

    Args:
        start_url: where to start (a page, or the site's sitemap URL).
        max_pages: most pages returned.
        max_bytes_total: most bytes downloaded over the whole crawl (robots.txt and sitemaps included).
        allow_loopback: the dev-only ALLOW_LOOPBACK_URLS setting.
        timeout: seconds allowed for each request.
        progress: awaited as ``progress(pages_done, pages_expected)`` after each page.
        max_page_bytes: largest single page (default 5 MB, never more than ``max_bytes_total``).
        user_agent, resolver, network_backend: see :class:`~control_plane.knowledge.fetch.SafeFetcher`.

    Raises:
        UnsafeURLError: the start URL (or its redirect) is refused.
        FetchError: the start page cannot be fetched, or robots.txt forbids it or cannot be read (HTTP 5xx).
        ExtractionError: no page with text was found.
    """
    start = normalize_url(str(check_url(start_url, allow_loopback=allow_loopback)))
    if start is None:  # check_url accepted it, so this cannot happen; kept for the type checker
        raise FetchError(INVALID_URL, code="invalid_url")
    page_limit = min(max_page_bytes or DEFAULT_MAX_PAGE_BYTES, max_bytes_total)
    async with SafeFetcher(
        allow_loopback=allow_loopback,
        timeout=timeout,
        user_agent=user_agent,
        resolver=resolver,
        network_backend=network_backend,
    ) as fetcher:
        state = _Crawl(
            fetcher,
            max_pages=max_pages,
            max_bytes_total=max_bytes_total,
            max_page_bytes=page_limit,
            progress=progress,
        )
        return await state.run(start)
