"""A loopback fake OpenID Connect provider, shaped like Google's, for testing "Sign in with Google".

It serves the discovery document, an authorization endpoint that consents at once for the identity the test chose,
a token endpoint that swaps the one-time code for an access token and an RS256 ID token (signed with a key generated
per provider and published at ``jwks_uri``), and a userinfo endpoint::

    provider = FakeOidcProvider()
    with provider.serve():
        provider.next_identity = OidcIdentity(sub="1234", email="ann@example.com")
        settings: GOOGLE_OAUTH_METADATA_URL = provider.metadata_url, CLIENT_ID/SECRET = provider.client_id/secret
        ... browser follows /en/login/google → provider.authorize → /auth/google/callback?code=...&state=...

Checked like the real one: client id and secret (HTTP Basic or form), the redirect URI and client bound to the code,
codes single-use and short-lived, ``response_type=code``, the ``openid`` scope. Not modelled: refresh tokens, PKCE,
consent screens, prompt/login_hint, token revocation.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeServer

__all__ = ["FakeOidcProvider", "OidcIdentity"]

CODE_TTL_SECONDS = 60
TOKEN_TTL_SECONDS = 3600


@dataclass
class OidcIdentity:
    """The person who "signs in" at the provider on the next authorization request."""

    sub: str
    email: str
    email_verified: bool = True
    name: str = "Test Person"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    identity: OidcIdentity
    expires_at: float


@dataclass
class FakeOidcProvider:
    """State of one fake provider; :meth:`serve` runs it on a loopback port."""

    client_id: str = "botfactory-test-client.apps.example"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    next_identity: OidcIdentity | None = None
    # Test hooks: sign ID tokens with a key the JWKS does not publish, or stamp a different nonce.
    sign_with_unknown_key: bool = False
    override_nonce: str | None = None
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._codes: dict[str, _Grant] = {}
        self._access_tokens: dict[str, OidcIdentity] = {}
        self._server: FakeServer | None = None

    # URLs -----------------------------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOidcProvider is not running")
        return self._server.base_url

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @contextmanager
    def serve(self) -> Iterator[FakeOidcProvider]:
        with FakeServer(self.app()) as server:
            self._server = server
            try:
                yield self
            finally:
                self._server = None

    # The ASGI app ---------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/o/oauth2/v2/auth", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/oauth2/v3/certs", self._jwks),
                Route("/v1/userinfo", self._userinfo),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/v1/userinfo",
                "jwks_uri": f"{base}/oauth2/v3/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id or not redirect_uri:
            # The real provider shows an error page rather than redirecting to an unverified URI.
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        state = params.get("state", "")

        def back(**values: str) -> RedirectResponse:
            query = urlencode({**values, **({"state": state} if state else {})})
            return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope")
        if self.next_identity is None:
            return back(error="access_denied")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            nonce=params.get("nonce"),
            identity=self.next_identity,
            expires_at=time.time() + CODE_TTL_SECONDS,
        )
        return back(code=code)

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    async def _token(self, request: Request) -> Response:
        form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
        self.token_requests.append(form)
        client_id, secret = self._client_credentials(request, form)
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        grant = self._codes.pop(form.get("code", ""), None)  # single use, even when the rest is wrong
        if (
            grant is None
            or grant.expires_at < time.time()
            or grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access_token = secrets.token_urlsafe(32)
        self._access_tokens[access_token] = grant.identity
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL_SECONDS,
                "scope": "openid email profile",
                "id_token": self._id_token(grant, access_token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _id_token(self, grant: _Grant, access_token: str) -> str:
        now = int(time.time())
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "sub": grant.identity.sub,
            "email": grant.identity.email,
            "email_verified": grant.identity.email_verified,
            "name": grant.identity.name,
            "iat": now,
            "exp": now + TOKEN_TTL_SECONDS,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
        }
        nonce = self.override_nonce or grant.nonce
        if nonce:
            claims["nonce"] = nonce
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.sign_with_unknown_key else self._key
        )
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self._kid})

    async def _jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [jwk]})

    async def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        identity = self._access_tokens.get(header[7:]) if header.lower().startswith("bearer ") else None
        if identity is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(
            {
                "sub": identity.sub,
                "email": identity.email,
                "email_verified": identity.email_verified,
                "name": identity.name,
            }
        )
