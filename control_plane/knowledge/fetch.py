"""Fetch a tenant-supplied URL without letting it reach our own network (SSRF protection).

A tenant types a URL and our server downloads it, so the URL must never lead to loopback, private, link-local (cloud
metadata at 169.254.169.254), CGNAT, multicast or otherwise non-public addresses, directly or through a redirect,
an IPv4-mapped IPv6 spelling (``::ffff:127.0.0.1``) or a DNS answer that changes between the check and the
connection (DNS rebinding).

The check therefore lives where the socket is opened: a custom httpcore network backend resolves the host name,
refuses the connection if ANY resolved address is not public, and connects to the vetted IP itself. httpx never
resolves names on its own, TLS still verifies the certificate against the host name (httpcore passes the URL's host
as SNI), and every connection, including each redirect hop, goes through the same check. Redirects are followed by
hand (at most five) so each hop's scheme and port are checked before anything is sent.

    page = await fetch("https://example.com/menu", allow_loopback=False, max_bytes=5_000_000, timeout=15)
    document = extract_page(page, max_bytes=5_000_000)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Self
from urllib.parse import unquote

import httpcore
import httpx

from bot_runtime.i18n import N_
from control_plane.knowledge.extract import (
    NO_TEXT,
    ExtractedDocument,
    ExtractionError,
    decode_html,
    extract,
    extract_html,
    format_megabytes,
)

__all__ = [
    "ANY_CONTENT_TYPE",
    "DOCUMENT_CONTENT_TYPES",
    "HTML_CONTENT_TYPES",
    "MAX_REDIRECTS",
    "FetchError",
    "FetchedPage",
    "Resolver",
    "SafeFetcher",
    "UnsafeURLError",
    "address_allowed",
    "check_url",
    "default_user_agent",
    "extract_page",
    "fetch",
    "system_resolver",
]

MAX_REDIRECTS = 5
HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DOCUMENT_CONTENT_TYPES = HTML_CONTENT_TYPES | {
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/csv",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    # Many file hosts serve PDFs and spreadsheets as a generic binary; extract() decides from the bytes anyway.
    "application/octet-stream",
}
ANY_CONTENT_TYPE = frozenset({"*"})
STANDARD_PORTS = frozenset({80, 443})

# Error messages (English msgids; the API layer translates them).
INVALID_URL = N_("Enter a valid web address starting with http:// or https://.")
PORT_NOT_ALLOWED = N_("Only web addresses on the standard ports (80 and 443) can be used.")
ADDRESS_NOT_ALLOWED = N_("The address %(host)s points to a private or internal network and cannot be used.")
HOST_NOT_FOUND = N_("The site %(host)s could not be found. Check the address.")
CONNECT_FAILED = N_("The site could not be reached. Check the address or try again later.")
TLS_FAILED = N_("The site's security certificate is not valid, so it was not read.")
TIMED_OUT = N_("The site took too long to respond. Try again later.")
TOO_MANY_REDIRECTS = N_("The site redirected too many times.")
HTTP_ERROR = N_("The site answered with an error (HTTP %(status)s).")
BAD_RESPONSE = N_("The site sent a response that could not be read.")
CONTENT_TYPE_NOT_ALLOWED = N_("This kind of content (%(content_type)s) is not supported.")
REDIRECT_DECLINED = N_("The page redirects to %(url)s, which is not read here.")
PAGE_TOO_LARGE = N_("The page is too large. The maximum size is %(max_mb)s MB.")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Resolves (host, port) to IP address strings; replaceable so tests can simulate public names and rebinding.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class FetchError(ExtractionError):
    """A URL could not be fetched. ``status`` is the HTTP status when the server answered with an error."""

    code = "fetch_failed"
    message = CONNECT_FAILED

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        params: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, params=params)
        self.status = status


class UnsafeURLError(FetchError):
    """The URL (or a redirect, or a resolved address) leads somewhere tenants may not reach."""

    code = "unsafe_url"
    message = ADDRESS_NOT_ALLOWED


# --------------------------------------------------------------------------------------------------------------------
# Address and URL policy

# Ranges refused even if a Python version's ``is_global`` table were to miss one; the classifier also requires
# ``is_global``, so this list is a second line, not the whole policy.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; connecting to 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_allowed(address: str | _IPAddress, *, allow_loopback: bool = False) -> bool:
    """Whether a server may connect to ``address``: public unicast only, loopback too when ``allow_loopback``.

    IPv6 forms that carry an IPv4 address (``::ffff:10.0.0.1``, ``::10.0.0.1``, NAT64 ``64:ff9b::a00:1``, 6to4
    ``2002:a00:1::``) are judged by that IPv4 address. Unparseable input is refused.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return address_allowed(embedded, allow_loopback=allow_loopback)
    if ip.is_loopback:
        return allow_loopback
    if any(ip in network for network in _BLOCKED_NETWORKS if network.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def check_url(url: str | httpx.URL, *, allow_loopback: bool) -> httpx.URL:
    """Parse and vet a URL's form (the addresses are vetted when connecting); the fragment is dropped.

    Raises:
        FetchError: not an http(s) URL with a host.
        UnsafeURLError: a non-standard port (unless ``allow_loopback``) or an IP literal that is not public.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(INVALID_URL, code="invalid_url") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(INVALID_URL, code="invalid_url")
    if parsed.userinfo:
        # "http://trusted.example@10.0.0.1/" style addresses exist to mislead people; no source needs credentials.
        raise FetchError(INVALID_URL, code="invalid_url")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not allow_loopback and port not in STANDARD_PORTS:
        raise UnsafeURLError(PORT_NOT_ALLOWED, code="port_not_allowed", params={"port": port})
    with contextlib.suppress(ValueError):
        literal = ipaddress.ip_address(parsed.host)
        if not address_allowed(literal, allow_loopback=allow_loopback):
            raise UnsafeURLError(ADDRESS_NOT_ALLOWED, params={"host": parsed.host})
    return parsed.copy_with(fragment=None)


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver returns for ``host`` (A and AAAA)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(HOST_NOT_FOUND, code="host_not_found", params={"host": host}) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def default_user_agent() -> str:
    """``BotFactoryBot/1.0 (+DOMAIN_URL)``, so site owners can see who is reading and match us in robots.txt."""
    from control_plane.settings import get_settings

    return f"BotFactoryBot/1.0 (+{get_settings().domain_url})"


# --------------------------------------------------------------------------------------------------------------------
# The vetting network backend


class _VettingBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets and connects in one step, so the address checked is the address used."""

    def __init__(self, *, allow_loopback: bool, resolver: Resolver, inner: httpcore.AsyncNetworkBackend) -> None:
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        host = host.strip("[]")
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = list(await self._resolver(host, port))
        if not addresses:
            raise FetchError(HOST_NOT_FOUND, code="host_not_found", params={"host": host})
        # One bad answer refuses the host: a name with a public and a private record is an attack, not a mistake.
        if not all(address_allowed(address, allow_loopback=self._allow_loopback) for address in addresses):
            raise UnsafeURLError(ADDRESS_NOT_ALLOWED, params={"host": host})
        if not self._allow_loopback and port not in STANDARD_PORTS:
            raise UnsafeURLError(PORT_NOT_ALLOWED, code="port_not_allowed", params={"port": port})
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURLError(ADDRESS_NOT_ALLOWED, params={"host": path})

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _VettingTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that opens its connections through the vetting backend.

    httpx takes no network backend argument, so this sets the pool httpx's own ``__init__`` would have built, with
    ours in it. httpx is pinned below 0.29 in pyproject.toml, and a test connects through a fake public host name
    (which only the injected resolver knows) to prove the pool really uses the backend.
    """

    def __init__(self, backend: _VettingBackend, *, verify: bool | ssl.SSLContext = True) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )


# --------------------------------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """A downloaded resource: the final URL after redirects, its status, media type (no parameters) and bytes."""

    url: str
    status: int
    content_type: str
    data: bytes
    charset: str | None = None

    @property
    def is_html(self) -> bool:
        return self.content_type in HTML_CONTENT_TYPES


def _media_type(header: str | None) -> tuple[str, str | None]:
    if not header:
        return "application/octet-stream", None
    media, _, rest = header.partition(";")
    charset = None
    for param in rest.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media.strip().lower() or "application/octet-stream", charset


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SafeFetcher:
    """One HTTP client that only talks to public addresses; reuse it for many fetches (a crawl), then close it.

        async with SafeFetcher(allow_loopback=False, timeout=15) as fetcher:
            page = await fetcher.fetch(url, max_bytes=5_000_000)

    Args:
        allow_loopback: also allow 127.0.0.0/8 and ::1 and any port (the dev-only ALLOW_LOOPBACK_URLS setting).
        timeout: seconds for one whole fetch, redirects and body included.
        user_agent: defaults to :func:`default_user_agent`.
        resolver: name resolution, :func:`system_resolver` by default.
        network_backend: the backend that opens the vetted connections (tests route fake public IPs with it).
        verify: TLS verification: True (system CAs) or an ``ssl.SSLContext`` (tests trust their own certificate).
    """

    def __init__(
        self,
        *,
        allow_loopback: bool,
        timeout: float,
        user_agent: str | None = None,
        resolver: Resolver | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        self.user_agent = user_agent or default_user_agent()
        backend = _VettingBackend(
            allow_loopback=allow_loopback,
            resolver=resolver or system_resolver,
            inner=network_backend or httpcore.AnyIOBackend(),
        )
        self._client = httpx.AsyncClient(
            transport=_VettingTransport(backend, verify=verify),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would make the proxy's address the one we vet
            timeout=httpx.Timeout(timeout),
            headers={
                "User-Agent": self.user_agent,
                "Accept": "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,*/*;q=0.8",
                # No brotli/zstd: only codecs whose decoded size we meter chunk by chunk.
                "Accept-Encoding": "gzip, deflate",
            },
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        accept: Collection[str] = DOCUMENT_CONTENT_TYPES,
        follow: Callable[[str], bool] | None = None,
    ) -> FetchedPage:
        """GET ``url`` following at most :data:`MAX_REDIRECTS` redirects, every hop vetted.

        Args:
            url: an http(s) URL.
            max_bytes: largest body accepted (decoded size); the download stops as soon as it is exceeded.
            accept: media types accepted (``ANY_CONTENT_TYPE`` for any); others raise before the body is read.
            follow: asked before each redirect with the target URL; False stops with a ``redirect_declined``
                error before the target is requested (the crawler declines other sites and pages it has read).

        Raises:
            UnsafeURLError: the URL or a redirect leads to a refused address or port.
            FetchError: invalid URL, DNS failure, connection failure, timeout, HTTP error status, unsupported
                content type, too large, too many redirects.
        """
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(url, max_bytes=max_bytes, accept=accept, follow=follow)
        except TimeoutError as exc:
            raise FetchError(TIMED_OUT, code="timeout") from exc

    async def _fetch(
        self, url: str, *, max_bytes: int, accept: Collection[str], follow: Callable[[str], bool] | None
    ) -> FetchedPage:
        current = check_url(url, allow_loopback=self.allow_loopback)
        for _hop in range(MAX_REDIRECTS + 1):
            async with self._send(current) as response:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    try:
                        target = current.join(location)
                    except (httpx.InvalidURL, ValueError) as exc:
                        raise FetchError(INVALID_URL, code="invalid_url") from exc
                    current = check_url(target, allow_loopback=self.allow_loopback)
                    if follow is not None and not follow(str(current)):
                        raise FetchError(REDIRECT_DECLINED, code="redirect_declined", params={"url": str(current)})
                    continue
                if response.status_code >= 400:
                    raise FetchError(
                        HTTP_ERROR,
                        code="http_error",
                        params={"status": response.status_code},
                        status=response.status_code,
                    )
                media_type, charset = _media_type(response.headers.get("content-type"))
                if "*" not in accept and media_type not in accept:
                    raise FetchError(CONTENT_TYPE_NOT_ALLOWED, code="content_type", params={"content_type": media_type})
                too_large = FetchError(PAGE_TOO_LARGE, code="too_large", params={"max_mb": format_megabytes(max_bytes)})
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise too_large
                body = bytearray()
                try:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise too_large
                except httpx.TimeoutException as exc:
                    raise FetchError(TIMED_OUT, code="timeout") from exc
                except httpx.HTTPError as exc:
                    raise FetchError(BAD_RESPONSE, code="bad_response") from exc
                return FetchedPage(
                    url=str(current),
                    status=response.status_code,
                    content_type=media_type,
                    data=bytes(body),
                    charset=charset,
                )
        raise FetchError(TOO_MANY_REDIRECTS, code="too_many_redirects")

    @contextlib.asynccontextmanager
    async def _send(self, url: httpx.URL) -> AsyncIterator[httpx.Response]:
        request = self._client.build_request("GET", url)
        try:
            response = await self._client.send(request, stream=True)
        except FetchError:
            raise
        except httpx.TimeoutException as exc:
            raise FetchError(TIMED_OUT, code="timeout") from exc
        except (httpx.ConnectError, httpx.NetworkError) as exc:
            if _caused_by_tls(exc):
                raise FetchError(TLS_FAILED, code="tls_failed") from exc
            raise FetchError(CONNECT_FAILED, code="connect_failed") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchError(INVALID_URL, code="invalid_url") from exc
        except httpx.HTTPError as exc:
            raise FetchError(BAD_RESPONSE, code="bad_response") from exc
        try:
            yield response
        finally:
            await response.aclose()


async def fetch(
    url: str,
    *,
    allow_loopback: bool,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - a budget for the whole fetch, enforced inside with asyncio.timeout
    accept: Collection[str] = DOCUMENT_CONTENT_TYPES,
    user_agent: str | None = None,
    resolver: Resolver | None = None,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> FetchedPage:
    """Fetch one URL safely (see :class:`SafeFetcher` for the arguments and errors)."""
    async with SafeFetcher(
        allow_loopback=allow_loopback,
        timeout=timeout,
        user_agent=user_agent,
        resolver=resolver,
        network_backend=network_backend,
    ) as fetcher:
        return await fetcher.fetch(url, max_bytes=max_bytes, accept=accept)


_EXTENSION_FOR_TYPE = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


def extract_page(page: FetchedPage, *, max_bytes: int) -> ExtractedDocument:
    """Extract a fetched resource: HTML through :func:`extract_html`, files (a linked PDF, a CSV) through extract().

    Raises:
        ExtractionError: the resource has no text or cannot be read.
    """
    if page.is_html:
        document = extract_html(decode_html(page.data, page.charset), page.url)
        if not document.blocks:
            raise ExtractionError(NO_TEXT, code="no_text")
        return document
    name = unquote(PurePosixPath(httpx.URL(page.url).path).name) or "document"
    if not PurePosixPath(name).suffix and page.content_type in _EXTENSION_FOR_TYPE:
        name = f"{name}.{_EXTENSION_FOR_TYPE[page.content_type]}"
    document = extract(page.data, name, max_bytes=max_bytes)
    document.meta.setdefault("url", page.url)
    return document
