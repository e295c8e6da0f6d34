"""SSRF-safe fetching and same-site crawling against loopback websites.

Tests that need a "public" site without the internet use two seams of the fetcher: a resolver that answers for
made-up host names (``shop.example`` → a public address) and a network backend that carries connections to that
public address to the loopback site. The vetting itself is the production code path: a name that resolves to a
private address is refused before any connection is made.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from control_plane.knowledge.crawl import crawl, normalize_url
from control_plane.knowledge.extract import ExtractionError
from control_plane.knowledge.fetch import (
    ADDRESS_NOT_ALLOWED,
    ANY_CONTENT_TYPE,
    PORT_NOT_ALLOWED,
    FetchError,
    SafeFetcher,
    UnsafeURLError,
    address_allowed,
    check_url,
    extract_page,
    fetch,
)
from tests.control_plane.knowledge.conftest import Website

PUBLIC_IP = "93.184.216.34"
MB = 1024 * 1024


@pytest.fixture(autouse=True)
async def clean_slate() -> AsyncIterator[None]:
    """Overrides the suite-wide database/Redis wipe: fetching and crawling touch neither."""
    yield


class FakeDNS:
    """A resolver for made-up names; a list of answers is served one per lookup (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        answers = self.answers[host]
        return answers[min(self.lookups.count(host), len(answers)) - 1]


class RoutingBackend(httpcore.AsyncNetworkBackend):
    """Carries connections for the fake public address to the loopback site; anything else never leaves the test."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.connects: list[tuple[str, int]] = []
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if host not in self.routes:
            raise httpcore.ConnectError(f"no route to {host} in this test")
        return await self.inner.connect_tcp("127.0.0.1", self.routes[host], timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def public_site(website: Website, **names: list[list[str]]) -> dict[str, Any]:
    """fetch()/crawl() keyword arguments that make ``shop.example`` a public host serving ``website``."""
    dns = FakeDNS({"shop.example": [[PUBLIC_IP]], **{name.replace("_", "."): a for name, a in names.items()}})
    return {"resolver": dns, "network_backend": RoutingBackend({PUBLIC_IP: website.port})}


# --------------------------------------------------------------------------------------------------------------------
# Address and URL policy


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::1",  # local-use NAT64
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",
        "2001:db8::1",
        "ff02::1",
        "not-an-address",
        "",
    ],
)
def test_refused_addresses(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


def test_allow_loopback_opens_loopback_only() -> None:
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert address_allowed(address, allow_loopback=True)
    for address in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "::ffff:192.168.0.1", "fe80::1", "100.64.0.1"):
        assert not address_allowed(address, allow_loopback=True)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "example.com", "http://", "gopher://x/"]
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        check_url(url, allow_loopback=False)
    assert caught.value.code == "invalid_url"


def test_check_url_rules() -> None:
    assert str(check_url("https://Example.com/a?b=1#frag", allow_loopback=False)) == "https://example.com/a?b=1"
    assert check_url("http://example.com:443/", allow_loopback=False).port == 443
    with pytest.raises(FetchError):
        check_url("http://trusted.example@10.0.0.1/", allow_loopback=False)
    with pytest.raises(UnsafeURLError) as caught:
        check_url("http://example.com:8080/", allow_loopback=False)
    assert (caught.value.message, caught.value.params) == (PORT_NOT_ALLOWED, {"port": 8080})
    assert check_url("http://example.com:8080/", allow_loopback=True).port == 8080
    for url in ("http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(UnsafeURLError) as caught:
            check_url(url, allow_loopback=False)
        assert caught.value.message == ADDRESS_NOT_ALLOWED


# --------------------------------------------------------------------------------------------------------------------
# Fetching


async def test_fetch_a_page(website: Website) -> None:
    page = await fetch(f"{website.base_url}/about#team", allow_loopback=True, max_bytes=MB, timeout=5)

    assert (page.url, page.status, page.content_type, page.charset) == (
        f"{website.base_url}/about",
        200,
        "text/html",
        "utf-8",
    )
    assert b"family business" in page.data
    document = extract_page(page, max_bytes=MB)
    assert document.title == "About us"  # trafilatura prefers the page's own heading to the <title>
    assert any("founded in 1998" in block.text for block in document.blocks)


async def test_user_agent_names_the_bot(website: Website) -> None:
    page = await fetch(f"{website.base_url}/echo", allow_loopback=True, max_bytes=MB, timeout=5)
    assert "user-agent=BotFactoryBot/1.0 (+http://testserver)" in page.data.decode()


async def test_loopback_is_refused_without_the_dev_setting(website: Website) -> None:
    with pytest.raises(UnsafeURLError) as caught:  # the test site's port is not 80/443
        await fetch(f"{website.base_url}/about", allow_loopback=False, max_bytes=MB, timeout=5)
    assert caught.value.code == "port_not_allowed"
    with pytest.raises(UnsafeURLError) as caught:  # a name that resolves to 127.0.0.1, on the standard port
        await fetch("http://localhost/about", allow_loopback=False, max_bytes=MB, timeout=5)
    assert (caught.value.message, caught.value.params) == (ADDRESS_NOT_ALLOWED, {"host": "localhost"})
    assert website.hits == []


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://0/", "http://[::]/"])
async def test_odd_spellings_of_local_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        await fetch(url, allow_loopback=False, max_bytes=MB, timeout=5)


async def test_connection_is_pinned_to_the_vetted_address(website: Website) -> None:
    seams = public_site(website)

    page = await fetch("http://shop.example/echo", allow_loopback=False, max_bytes=MB, timeout=5, **seams)

    # The name was resolved once by our resolver, the socket went to that address, and the site saw its own name.
    assert seams["resolver"].lookups == ["shop.example"]
    assert seams["network_backend"].connects == [(PUBLIC_IP, 80)]
    assert page.data.decode().startswith("host=shop.example\n")
    assert page.url == "http://shop.example/echo"


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/private/target", "http://127.0.0.1/private/target"])
async def test_redirect_to_loopback_is_refused(website: Website, target: str) -> None:
    seams = public_site(website)
    location = target.format(port=website.port)

    with pytest.raises(UnsafeURLError):
        await fetch(
            f"http://shop.example/redirect?to={location}", allow_loopback=False, max_bytes=MB, timeout=5, **seams
        )

    assert website.hits == [f"/redirect?to={location}"]
    assert seams["network_backend"].connects == [(PUBLIC_IP, 80)]


async def test_redirect_hop_resolving_to_loopback_is_refused(website: Website) -> None:
    seams = public_site(website, internal_example=[["127.0.0.1"]])

    with pytest.raises(UnsafeURLError) as caught:
        await fetch(
            "http://shop.example/redirect?to=http://internal.example/private/target",
            allow_loopback=False,
            max_bytes=MB,
            timeout=5,
            **seams,
        )

    assert caught.value.params == {"host": "internal.example"}
    assert seams["resolver"].lookups == ["shop.example", "internal.example"]
    assert seams["network_backend"].connects == [(PUBLIC_IP, 80)]
    assert not any(hit.startswith("/private") for hit in website.hits)


async def test_the_same_redirect_is_followed_when_loopback_is_allowed(website: Website) -> None:
    target = f"{website.base_url}/about"
    page = await fetch(f"{website.base_url}/redirect?to={target}", allow_loopback=True, max_bytes=MB, timeout=5)
    assert page.url == target


async def test_every_connection_is_checked_again_dns_rebinding(website: Website) -> None:
    # The first lookup says public, the next one says loopback: the second connection must be refused.
    seams = public_site(website, rebind_example=[[PUBLIC_IP], ["127.0.0.1"]])
    async with SafeFetcher(allow_loopback=False, timeout=5, **seams) as fetcher:
        first = await fetcher.fetch("http://rebind.example/about", max_bytes=MB)
        assert first.status == 200
    with pytest.raises(UnsafeURLError):
        await fetch("http://rebind.example/about", allow_loopback=False, max_bytes=MB, timeout=5, **seams)
    assert seams["network_backend"].connects == [(PUBLIC_IP, 80)]


async def test_one_private_answer_among_public_ones_refuses_the_host(website: Website) -> None:
    seams = public_site(website, mixed_example=[[PUBLIC_IP, "10.0.0.7"]])
    with pytest.raises(UnsafeURLError):
        await fetch("http://mixed.example/about", allow_loopback=False, max_bytes=MB, timeout=5, **seams)
    assert seams["network_backend"].connects == []


async def test_redirects_are_followed_up_to_five(website: Website) -> None:
    page = await fetch(f"{website.base_url}/chain/5", allow_loopback=True, max_bytes=MB, timeout=5)
    assert page.url == f"{website.base_url}/chain/0"
    with pytest.raises(FetchError) as caught:
        await fetch(f"{website.base_url}/chain/6", allow_loopback=True, max_bytes=MB, timeout=5)
    assert caught.value.code == "too_many_redirects"


async def test_oversize_responses_are_aborted(website: Website) -> None:
    with pytest.raises(FetchError) as caught:  # declared by Content-Length
        await fetch(f"{website.base_url}/big-declared", allow_loopback=True, max_bytes=100_000, timeout=5)
    assert (caught.value.code, caught.value.params) == ("too_large", {"max_mb": "0.095"})
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:  # streamed without a length, 256 MB if read to the end
        await fetch(f"{website.base_url}/big-stream", allow_loopback=True, max_bytes=MB, timeout=5)
    assert caught.value.code == "too_large"
    assert time.monotonic() - started < 2


async def test_timeout(website: Website) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        await fetch(f"{website.base_url}/slow", allow_loopback=True, max_bytes=MB, timeout=0.5)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 2


async def test_content_type_and_http_errors(website: Website) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch(f"{website.base_url}/image", allow_loopback=True, max_bytes=MB, timeout=5)
    assert (caught.value.code, caught.value.params) == ("content_type", {"content_type": "image/png"})
    page = await fetch(
        f"{website.base_url}/image", allow_loopback=True, max_bytes=MB, timeout=5, accept=ANY_CONTENT_TYPE
    )
    assert page.content_type == "image/png"
    with pytest.raises(FetchError) as caught:
        await fetch(f"{website.base_url}/missing", allow_loopback=True, max_bytes=MB, timeout=5)
    assert (caught.value.code, caught.value.status, caught.value.params) == ("http_error", 404, {"status": 404})


async def test_unreachable_site(website: Website) -> None:
    seams = public_site(website, down_example=[["203.0.114.9"]])
    with pytest.raises(FetchError) as caught:
        await fetch("http://down.example/", allow_loopback=False, max_bytes=MB, timeout=5, **seams)
    assert caught.value.code == "connect_failed"


async def test_a_linked_file_is_extracted_by_its_content(website: Website) -> None:
    page = await fetch(f"{website.base_url}/prices.csv", allow_loopback=True, max_bytes=MB, timeout=5)
    document = extract_page(page, max_bytes=MB)
    assert document.kind == "csv"
    assert [b.text for b in document.blocks] == ["Item: Green tea; Price: 45000", "Item: Black tea; Price: 60000"]
    assert document.meta["url"] == page.url


# --------------------------------------------------------------------------------------------------------------------
# Crawling


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Example.COM:80/a/b?z=1&a=2&utm_source=x#frag") == "http://example.com/a/b?a=2&z=1"
    assert normalize_url("https://example.com") == "https://example.com/"
    assert normalize_url("https://example.com:8443/x?b=&a=1") == "https://example.com:8443/x?a=1&b="
    assert normalize_url("mailto:shop@example.com") is None
    assert normalize_url("http://[::1]:8000/") == "http://[::1]:8000/"


async def test_crawl_follows_links_on_the_same_site(website: Website) -> None:
    progress: list[tuple[int, int]] = []

    async def report(done: int, total: int) -> None:
        progress.append((done, total))

    pages = await crawl(
        f"{website.base_url}/",
        max_pages=20,
        max_bytes_total=5 * MB,
        allow_loopback=True,
        timeout=5,
        progress=report,
    )

    base = website.base_url
    assert [page.url for page in pages] == [f"{base}/", f"{base}/about", f"{base}/prices", f"{base}/contact"]
    assert pages[1].title == "About us"
    prices = pages[2].document
    assert [b.meta["row"] for b in prices.blocks if b.kind == "table_row"] == [
        ["Green tea 100 g", "45 000"],
        ["Black tea 250 g", "60 000"],
    ]
    # robots.txt closes /private; assets, other sites and duplicate URLs are never requested.
    assert not any(hit.startswith(("/private", "/logo.png")) for hit in website.hits)
    # ?b=2&a=1 and ?a=1&b=2 are one URL; it is fetched once, and its text (the same as /prices) is kept once.
    assert website.hits.count("/prices?a=1&b=2") == 1
    assert not any("b=2&a=1" in hit for hit in website.hits)
    assert website.hits.count("/about") == 1  # /go-about redirects to a page already read
    assert "/go-about" in website.hits
    assert website.hits[0] == "/robots.txt"
    assert progress[-1] == (4, 4)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert all(done <= total for done, total in progress)


async def test_crawl_limits(website: Website) -> None:
    pages = await crawl(f"{website.base_url}/", max_pages=2, max_bytes_total=5 * MB, allow_loopback=True, timeout=5)
    assert len(pages) == 2
    # A byte budget that robots.txt and the start page use up ends the crawl after them.
    robots = await fetch(f"{website.base_url}/robots.txt", allow_loopback=True, max_bytes=MB, timeout=5)
    home = await fetch(f"{website.base_url}/", allow_loopback=True, max_bytes=MB, timeout=5)
    website.reset()
    budget = len(robots.data) + len(home.data) + 10
    pages = await crawl(f"{website.base_url}/", max_pages=20, max_bytes_total=budget, allow_loopback=True, timeout=5)
    assert [page.url for page in pages] == [f"{website.base_url}/"]
    assert website.hits == ["/robots.txt", "/", "/sitemap.xml", "/about"]


async def test_crawl_reads_the_sitemap_index_from_robots_txt(sitemap_website: Website) -> None:
    pages = await crawl(
        f"{sitemap_website.base_url}/", max_pages=20, max_bytes_total=5 * MB, allow_loopback=True, timeout=5
    )

    base = sitemap_website.base_url
    assert [page.url for page in pages] == [f"{base}/", f"{base}/p1", f"{base}/p2"]
    assert "/hidden" not in sitemap_website.hits  # robots.txt names BotFactoryBot; its group is the one we obey
    assert "/p3" not in sitemap_website.hits  # with a sitemap, links in pages are not followed
    assert "/sitemap-pages.xml" in sitemap_website.hits


async def test_crawl_can_start_from_the_sitemap_itself(sitemap_website: Website) -> None:
    pages = await crawl(
        f"{sitemap_website.base_url}/sitemap_index.xml",
        max_pages=20,
        max_bytes_total=5 * MB,
        allow_loopback=True,
        timeout=5,
    )
    assert [page.document.title for page in pages] == ["Sitemap shop", "Page 1", "Page 2"]


async def test_crawl_start_page_closed_by_robots(website: Website) -> None:
    with pytest.raises(FetchError) as caught:
        await crawl(f"{website.base_url}/private/x", max_pages=5, max_bytes_total=MB, allow_loopback=True, timeout=5)
    assert caught.value.code == "robots_disallowed"
    assert website.hits == ["/robots.txt"]


async def test_crawl_redirect_to_loopback_is_refused(website: Website) -> None:
    seams = public_site(website)
    start = f"http://shop.example/redirect?to=http://127.0.0.1:{website.port}/about"
    with pytest.raises(UnsafeURLError):
        await crawl(start, max_pages=5, max_bytes_total=MB, allow_loopback=False, timeout=5, **seams)
    assert "/about" not in website.hits


async def test_crawl_of_a_public_name_stays_on_it(website: Website) -> None:
    seams = public_site(website)
    pages = await crawl(
        "http://shop.example/", max_pages=20, max_bytes_total=5 * MB, allow_loopback=False, timeout=5, **seams
    )
    assert [page.url for page in pages] == [
        "http://shop.example/",
        "http://shop.example/about",
        "http://shop.example/prices",
        "http://shop.example/contact",
    ]
    assert {host for host, _ in seams["network_backend"].connects} == {PUBLIC_IP}


async def test_crawl_with_no_text_anywhere(website: Website) -> None:
    with pytest.raises(ExtractionError):
        await crawl(f"{website.base_url}/image", max_pages=5, max_bytes_total=MB, allow_loopback=True, timeout=5)


# --------------------------------------------------------------------------------------------------------------------
# TLS through the pinned connection


def _certificate(hostname: str) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its key for ``hostname``."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 holding a certificate for ``shop.example``, and a client context trusting it."""
    cert_pem, key_pem = _certificate("shop.example")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"secure hello, host={self.headers.get('Host')}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ssl.create_default_context(cadata=cert_pem.decode())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


async def test_https_verifies_the_certificate_against_the_host_name(tls_site: tuple[int, ssl.SSLContext]) -> None:
    port, trust = tls_site
    dns = FakeDNS({"shop.example": [[PUBLIC_IP]], "other.example": [[PUBLIC_IP]]})
    backend = RoutingBackend({PUBLIC_IP: port})

    async with SafeFetcher(
        allow_loopback=False, timeout=5, resolver=dns, network_backend=backend, verify=trust
    ) as fetcher:
        page = await fetcher.fetch("https://shop.example/", max_bytes=MB)
        assert page.data == b"secure hello, host=shop.example"
        # Same pinned address, but the name does not match the certificate: refused by TLS verification.
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch("https://other.example/", max_bytes=MB)
        assert caught.value.code == "tls_failed"
    assert backend.connects == [(PUBLIC_IP, 443), (PUBLIC_IP, 443)]
