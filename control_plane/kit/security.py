"""Password hashing (argon2), signed access tokens (JWT), opaque secrets, CSRF tokens and encryption at rest."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from control_plane.settings import get_settings

_hasher = PasswordHasher()
# Verifying against this keeps the timing of "no such user" equal to "wrong password".
_DUMMY_HASH = _hasher.hash("botfactory-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Hash of an opaque token for storage; tokens are random, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def _secret(name: str) -> str:
    value = getattr(get_settings(), name)
    if not value:
        raise RuntimeError(f"{name.upper()} is not set (make run generates development secrets into .data/secrets)")
    return value


def create_access_token(subject: str, *, kind: str = "user", extra: dict[str, Any] | None = None) -> tuple[str, int]:
    """A short-lived HS256 JWT; returns (token, expires_in seconds)."""
    ttl = get_settings().access_token_ttl_seconds
    now = datetime.now(UTC)
    claims = {"sub": subject, "typ": kind, "iat": now, "exp": now + timedelta(seconds=ttl), "jti": uuid.uuid4().hex}
    claims.update(extra or {})
    return jwt.encode(claims, _secret("jwt_secret_key"), algorithm="HS256"), ttl


def decode_access_token(token: str) -> dict[str, Any] | None:
    try:
        return jwt.decode(token, _secret("jwt_secret_key"), algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None


def csrf_token_for(session_secret: str) -> str:
    """CSRF token bound to the browser session, so a token from one session is useless in another."""
    return hmac.new(_secret("jwt_secret_key").encode(), b"csrf:" + session_secret.encode(), "sha256").hexdigest()


def csrf_matches(session_secret: str, candidate: str | None) -> bool:
    return bool(candidate) and hmac.compare_digest(csrf_token_for(session_secret), candidate or "")


def fingerprint(value: str, *, purpose: str) -> str:
    """Keyed fingerprint of a secret (e.g. a bot token) to detect reuse without storing the secret."""
    return hmac.new(_secret("jwt_secret_key").encode(), f"{purpose}:{value}".encode(), "sha256").hexdigest()


def _fernet(keys: list[str]) -> MultiFernet:
    if not keys:
        raise RuntimeError("ENCRYPTION_KEY is not set (make run generates one into .data/secrets)")
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt(plaintext: str) -> bytes:
    """Encrypt with the newest ENCRYPTION_KEY; older keys still decrypt, so keys rotate safely."""
    return _fernet(get_settings().encryption_keys).encrypt(plaintext.encode())


def decrypt(ciphertext: bytes) -> str:
    try:
        return _fernet(get_settings().encryption_keys).decrypt(ciphertext).decode()
    except InvalidToken as exc:
        raise RuntimeError("stored secret cannot be decrypted with the configured ENCRYPTION_KEY list") from exc
