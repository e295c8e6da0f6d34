"""Catalog completeness: every msgid in the code is in every catalog, translated (not fuzzy, not a copy of the
English), with the same placeholders, Uzbek written with proper oʻ/gʻ, and the compiled .mo files current.

The checks themselves live in scripts/i18n.py (which prints the same list when run), so the fix for any failure
here is: ``python scripts/i18n.py --todo /tmp/todo.json``, translate, ``--apply /tmp/todo.json --compile``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("uz", "ru", "en")
FIX = "run `python scripts/i18n.py --todo /tmp/todo.json`, translate, then `--apply /tmp/todo.json --compile`"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("botfactory_i18n_script", ROOT / "scripts" / "i18n.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


i18n = _load_script()


@pytest.fixture(scope="module")
def template() -> Catalog:
    return i18n.extract()


@pytest.fixture(scope="module")
def catalogs() -> dict[str, Catalog]:
    return {lang: i18n.load(lang) for lang in LANGUAGES}


def _listing(problems: list[object]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:60])
    more = f"\n  … and {len(problems) - 60} more" if len(problems) > 60 else ""
    return f"{len(problems)} problem(s):\n{shown}{more}\n{FIX}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalog_exists_with_the_right_plural_forms(lang: str, catalogs: dict[str, Catalog]) -> None:
    assert i18n.po_path(lang).exists()
    catalog = catalogs[lang]
    assert str(catalog.locale) == lang
    # Russian needs one/few/many ("1 бот", "2 бота", "5 ботов"); Uzbek and English have two forms.
    assert catalog.num_plurals == {"ru": 3, "uz": 2, "en": 2}[lang]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_msgid_in_the_code_is_in_the_catalog(lang: str, template: Catalog, catalogs: dict[str, Catalog]) -> None:
    missing = i18n.missing_from_catalog(lang, catalogs[lang], template)
    assert not missing, _listing(missing)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_entry_is_translated_and_well_formed(lang: str, catalogs: dict[str, Catalog]) -> None:
    """No untranslated or fuzzy entry, no uz/ru msgstr equal to its msgid, the same %(placeholders)s."""
    problems = i18n.check_catalog(lang, catalogs[lang])
    assert not problems, _listing(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_the_po_file(lang: str, catalogs: dict[str, Catalog]) -> None:
    path = i18n.mo_path(lang)
    assert path.exists(), f"{path} is missing: run `make i18n-compile` (or scripts/i18n.py --compile)"
    with open(path, "rb") as handle:
        compiled = read_mo(handle)

    def entries(catalog: Catalog) -> dict[object, object]:
        return {
            (m.id if isinstance(m.id, str) else tuple(m.id)): (
                m.string if isinstance(m.string, str) else tuple(m.string)
            )
            for m in catalog
            if m.id and not m.fuzzy and m.string and (isinstance(m.string, str) or all(m.string))
        }

    assert entries(compiled) == entries(catalogs[lang]), f"{path} is stale: run `make i18n-compile`"


def test_uzbek_uses_modifier_letters_consistently(catalogs: dict[str, Catalog]) -> None:
    """oʻ and gʻ take U+02BB everywhere; a stray ASCII or curly apostrophe between letters is a typo."""
    texts = [
        form
        for message in catalogs["uz"]
        if message.id
        for form in ([message.string] if isinstance(message.string, str) else list(message.string))
    ]
    bad = [text for text in texts if i18n.UZ_BAD_APOSTROPHE.search(text)]
    assert not bad, bad
    joined = " ".join(texts)
    assert "oʻ" in joined and "gʻ" in joined  # the catalog really is written with U+02BB


def test_russian_plurals_pick_the_right_form(catalogs: dict[str, Catalog]) -> None:
    from babel.support import Translations

    plurals = [m for m in catalogs["ru"] if m.id and isinstance(m.id, tuple) and len(m.string) == 3 and all(m.string)]
    if not plurals:
        pytest.skip("no translated plural msgids yet")
    translations = Translations.load(str(i18n.LOCALE_DIR), locales=["ru"], domain=i18n.DOMAIN)
    message = plurals[0]
    one, few, many = message.string
    assert translations.ngettext(message.id[0], message.id[1], 21) == one
    assert translations.ngettext(message.id[0], message.id[1], 3) == few
    assert translations.ngettext(message.id[0], message.id[1], 11) == many


def test_translations_are_per_context_never_global() -> None:
    from bot_runtime.i18n import current_locale, gettext, use_locale

    before = current_locale.get()
    with use_locale("ru"):
        assert gettext("Pricing") == "Тарифы"
        with use_locale("uz"):
            assert gettext("Pricing") == "Tariflar"
        assert gettext("Pricing") == "Тарифы"
    assert current_locale.get() == before
    with use_locale("de"):  # unknown locales fall back to the English msgids
        assert gettext("Pricing") == "Pricing"


def test_the_checker_catches_each_kind_of_problem() -> None:
    """The meta-test's own test: a catalog with one of each mistake is reported entry by entry."""
    catalog = Catalog(locale="ru")
    catalog.add("Untranslated", "")
    catalog.add("Fuzzy", "Нечётко", flags=["fuzzy"])
    catalog.add("Copied", "Copied")
    catalog.add("Hello %(name)s", "Привет, %(nom)s")
    catalog.add("Fine %(name)s", "Хорошо, %(name)s")
    catalog.add("Telegram", "Telegram")
    catalog.add(("%(num)d bot", "%(num)d bots"), ("%(num)d бот", "%(num)d бота", ""))
    catalog.add("Discount", "Скидка 5%")
    found = {(p.kind, p.msgid) for p in i18n.check_catalog("ru", catalog)}
    assert found == {
        ("untranslated", "Untranslated"),
        ("fuzzy", "Fuzzy"),
        ("same-as-msgid", "Copied"),
        ("placeholders", "Hello %(name)s"),
        ("untranslated", "%(num)d bot"),
        ("stray-percent", "Discount"),
    }
    uz = Catalog(locale="uz")
    uz.add("Language", "Til o'zgartirish")
    assert [p.kind for p in i18n.check_catalog("uz", uz)] == ["apostrophe"]
