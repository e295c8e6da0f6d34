"""Gettext catalogs shared by the control plane and the runtimes, chosen per request through a context variable.

Translations are never installed globally: every lookup reads the active locale from ``current_locale``, so two
requests (or two chats) rendered concurrently each get their own language.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from babel.support import LazyProxy, NullTranslations, Translations

LOCALES: tuple[str, ...] = ("uz", "ru", "en")
DEFAULT_LOCALE = "en"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"

current_locale: contextvars.ContextVar[str] = contextvars.ContextVar("current_locale", default=DEFAULT_LOCALE)


@lru_cache(maxsize=8)
def translations_for(locale: str) -> NullTranslations:
    """Load (once) the compiled catalog for ``locale``; unknown locales fall back to the msgids (English)."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    return Translations.load(str(LOCALE_DIR), locales=[locale], domain=DOMAIN)


def normalize_locale(value: str | None) -> str | None:
    """Map 'ru-RU', 'uz_Latn', 'EN' ... to one of LOCALES, or None."""
    if not value:
        return None
    head = value.strip().replace("_", "-").split("-")[0].lower()
    return head if head in LOCALES else None


def gettext(message: str, **params: object) -> str:
    """Translate ``message`` into the active locale; ``params`` fill ``%(name)s`` placeholders."""
    text = translations_for(current_locale.get()).gettext(message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: object) -> str:
    """Plural-aware translation; ``n`` is also available as ``%(num)d``."""
    text = translations_for(current_locale.get()).ngettext(singular, plural, n)
    return text % {"num": n, **params}


def lazy_gettext(message: str, **params: object) -> LazyProxy:
    """A translation evaluated when rendered, for strings defined at import time."""
    return LazyProxy(gettext, message, enable_cache=False, **params)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now."""
    return message


@contextlib.contextmanager
def use_locale(locale: str | None) -> Iterator[str]:
    """Run a block in ``locale`` (falls back to English), restoring the previous one afterwards."""
    chosen = normalize_locale(locale) or DEFAULT_LOCALE
    token = current_locale.set(chosen)
    try:
        yield chosen
    finally:
        current_locale.reset(token)
