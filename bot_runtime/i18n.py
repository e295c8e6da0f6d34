"""Gettext catalogs shared by the control plane and the runtimes, chosen per request through a context variable.

Translations are never installed globally: every lookup reads the active locale from ``current_locale``, so two
requests (or two chats) rendered concurrently each get their own language.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from functools import lru_cache
from gettext import GNUTranslations, NullTranslations
from pathlib import Path

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
    # The stdlib reader, not babel.support: Babel would pull in its locale data (babel.core/dates/numbers) for
    # nothing more than reading a .mo file, which costs every runtime memory.
    path = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    try:
        with path.open("rb") as fp:
            return GNUTranslations(fp)
    except FileNotFoundError:
        return NullTranslations()


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


class LazyString:
    """A translation evaluated each time it is rendered (``str()``, formatting, concatenation)."""

    __slots__ = ("_message", "_params")

    def __init__(self, message: str, params: dict[str, object]) -> None:
        self._message = message
        self._params = params

    @property
    def value(self) -> str:
        return gettext(self._message, **self._params)

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"lazy_gettext({self._message!r})"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __len__(self) -> int:
        return len(self.value)

    def __contains__(self, item: str) -> bool:
        return item in self.value

    def __add__(self, other: str) -> str:
        return self.value + other

    def __radd__(self, other: str) -> str:
        return other + self.value

    def __mod__(self, other: object) -> str:
        return self.value % other

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, LazyString) else other)

    def __hash__(self) -> int:
        return hash(self.value)


def lazy_gettext(message: str, **params: object) -> LazyString:
    """A translation evaluated when rendered, for strings defined at import time."""
    return LazyString(message, params)


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
