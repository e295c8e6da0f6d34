"""Sign in with Google (OpenID Connect) through authlib's Starlette client.

authlib keeps the OAuth ``state`` and ``nonce`` in ``request.session``. Instead of a session middleware for the
whole app, the two sign-in routes load and store that small dict themselves, in a short-lived cookie signed with
itsdangerous: nothing else in BotFactory needs a cookie session, and nothing else should grow one by accident.

The callback path has no language prefix, so one redirect URI is registered with Google for every language; the
language (and the page to return to) travel in the signed cookie.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError

from control_plane.accounts.errors import GoogleSignInFailed
from control_plane.settings import get_settings

log = logging.getLogger("botfactory.accounts.google")

try:  # authlib talks HTTP through httpx2 when it is installed, else through httpx; either may raise.
    import httpx2

    _HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
except ImportError:  # pragma: no cover - depends on the installed client
    _HTTP_ERRORS = (httpx.HTTPError,)

CALLBACK_PATH = "/auth/google/callback"
STATE_COOKIE = "bf_oauth"
_RETURN_KEY = "bf_return"


@dataclass(frozen=True, slots=True)
class GoogleIdentity:
    sub: str
    email: str
    email_verified: bool
    name: str


@dataclass(frozen=True, slots=True)
class Return:
    """Where the browser goes after the callback: the language it started in and a same-site path (or None)."""

    lang: str
    next_path: str | None


@lru_cache(maxsize=4)
def _client(client_id: str, client_secret: str, metadata_url: str, timeout: float) -> StarletteOAuth2App:
    # Cached per configuration: the provider's discovery document and keys are fetched once, not per sign-in.
    oauth = OAuth()
    client = oauth.register(
        "google",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=metadata_url,
        client_kwargs={"scope": "openid email profile", "timeout": timeout},
    )
    assert isinstance(client, StarletteOAuth2App)
    return client


def client() -> StarletteOAuth2App | None:
    """The configured Google client, or None when GOOGLE_OAUTH_CLIENT_ID / SECRET are not set."""
    settings = get_settings()
    if not settings.google_oauth_enabled:
        return None
    return _client(
        settings.google_oauth_client_id,
        settings.google_oauth_client_secret,
        settings.google_oauth_metadata_url,
        settings.http_timeout_seconds,
    )


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().jwt_secret_key, salt="botfactory.oauth-state")


def _load_session(request: Request) -> dict[str, Any]:
    """Put the signed state cookie's content where authlib looks for it (``request.session``)."""
    raw = request.cookies.get(STATE_COOKIE, "")
    data: dict[str, Any] = {}
    if raw:
        try:
            loaded = _serializer().loads(raw, max_age=get_settings().oauth_state_ttl_seconds)
        except BadSignature:
            loaded = None
        if isinstance(loaded, dict):
            data = loaded
    request.scope["session"] = data
    return data


def _store_session(request: Request, response: Response) -> None:
    settings = get_settings()
    response.set_cookie(
        STATE_COOKIE,
        _serializer().dumps(request.scope.get("session", {})),
        max_age=settings.oauth_state_ttl_seconds,
        path="/",
        httponly=True,
        # Lax, not Strict: the callback is a top-level navigation coming back from Google.
        samesite="lax",
        secure=settings.https,
    )


def forget_state(response: Response) -> None:
    response.delete_cookie(STATE_COOKIE, path="/")


async def begin(request: Request, google: StarletteOAuth2App, *, lang: str, next_path: str | None) -> Response:
    """Redirect the browser to Google's consent page, remembering state, nonce, language and return path."""
    session = _load_session(request)
    session[_RETURN_KEY] = {"lang": lang, "next": next_path}
    redirect_uri = get_settings().domain_url.rstrip("/") + CALLBACK_PATH
    try:
        response = await google.authorize_redirect(request, redirect_uri)
    except (AuthlibBaseError, *_HTTP_ERRORS, ValueError, RuntimeError) as exc:
        # The discovery document could not be loaded: Google (or the configured provider) is unreachable.
        log.warning("accounts.google.begin_failed", exc_info=True)
        raise GoogleSignInFailed() from exc
    _store_session(request, response)
    return response


def pending_return(request: Request, default_lang: str) -> Return:
    """The language and return path saved by :func:`begin` (defaults when the cookie is gone)."""
    saved = _load_session(request).get(_RETURN_KEY) or {}
    lang = saved.get("lang") if isinstance(saved, dict) else None
    next_path = saved.get("next") if isinstance(saved, dict) else None
    return Return(
        lang=lang if isinstance(lang, str) else default_lang,
        next_path=next_path if isinstance(next_path, str) else None,
    )


async def complete(request: Request, google: StarletteOAuth2App) -> GoogleIdentity:
    """Check state, swap the code for tokens and validate the ID token (signature, issuer, audience, nonce)."""
    _load_session(request)
    try:
        token = await google.authorize_access_token(request)
    except (AuthlibBaseError, JoseError, *_HTTP_ERRORS, ValueError, KeyError) as exc:
        # A wrong or replayed state, a refused consent, a bad code or a bad signature: all end the same way.
        log.warning("accounts.google.callback_failed", exc_info=True)
        raise GoogleSignInFailed() from exc
    claims = token.get("userinfo") or {}
    sub = claims.get("sub")
    if not sub:
        raise GoogleSignInFailed()
    verified = claims.get("email_verified")
    return GoogleIdentity(
        sub=str(sub),
        email=str(claims.get("email") or ""),
        # Google sends a boolean; some older tokens carried the string "true".
        email_verified=verified is True or verified == "true",
        name=str(claims.get("name") or "")[:200],
    )
