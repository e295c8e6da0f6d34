"""Encryption of the secrets inside config documents with RUNTIME_SECRET_KEY (Fernet).

RUNTIME_SECRET_KEY may list several comma-separated keys, newest first: the newest encrypts, all of them decrypt, so
the key rotates without a flag day (publish with both keys, restart runtimes, drop the old key). ``cryptography``
is imported on first use: a runtime whose tenant has no encrypted credentials never pays for it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


class SecretKeyError(RuntimeError):
    """RUNTIME_SECRET_KEY is missing, or does not decrypt a document's credentials."""


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet

    parts = [key.strip() for key in keys.split(",") if key.strip()]
    if not parts:
        raise SecretKeyError("RUNTIME_SECRET_KEY is not set")
    return MultiFernet([Fernet(key.encode()) for key in parts])


def _keys(key: str | None) -> str:
    return key if key is not None else os.environ.get("RUNTIME_SECRET_KEY", "")


def encrypt_text(plaintext: str, *, key: str | None = None) -> str:
    """Fernet token (ASCII) of ``plaintext`` under the newest key; ``key`` defaults to $RUNTIME_SECRET_KEY."""
    return _fernet(_keys(key)).encrypt(plaintext.encode()).decode()


def decrypt_text(token: str, *, key: str | None = None) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(_keys(key)).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyError("credentials cannot be decrypted with RUNTIME_SECRET_KEY") from exc


def encrypt_json(value: dict[str, Any], *, key: str | None = None) -> str:
    return encrypt_text(json.dumps(value, separators=(",", ":")), key=key)


def decrypt_json(token: str, *, key: str | None = None) -> dict[str, Any]:
    """The JSON object inside a ``ChannelConfig.credentials`` or ``TenantConfig.providers`` token; {} for ""."""
    if not token:
        return {}
    value = json.loads(decrypt_text(token, key=key))
    if not isinstance(value, dict):
        raise SecretKeyError("decrypted credentials are not a JSON object")
    return value
