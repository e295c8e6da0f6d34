#!/usr/bin/env python3
"""Keep the gettext catalogs (locales/{uz,ru,en}/LC_MESSAGES/messages.po) in step with the code.

    python scripts/i18n.py                    extract (babel.cfg) → update the catalogs → fill English → list what
                                              is left to translate in uz and ru
    python scripts/i18n.py --todo todo.json   … and write the untranslated entries as JSON, ready to translate
    python scripts/i18n.py --apply done.json  … and merge translations from such a JSON file first
    python scripts/i18n.py --compile          … and compile the .mo files
    python scripts/i18n.py --fill-en          only copy every msgid into the English msgstr (no extraction)
    python scripts/i18n.py --check            change nothing; exit 1 when a catalog is behind the code or incomplete

English is the source language, so its msgstr is always the msgid and every run fills it in. A translation round
is therefore: ``--todo /tmp/todo.json``, fill the JSON, ``--apply /tmp/todo.json --compile``. The JSON shape is
``{"uz": {msgid: msgstr | [plural forms]}, "ru": {...}}``; the ``"_plurals"`` key maps each plural msgid to its
msgid_plural for the translator's benefit. Uzbek forms must already use oʻ/gʻ (U+02BB) and ʼ (U+02BC).

Catalogs are written sorted by msgid and without line numbers, so concurrent edits in different files merge
cleanly and moving code around does not churn the .po files. Fuzzy matching is off: a changed English string
shows up as new and untranslated rather than silently inheriting a stale translation; a msgid that disappears
and comes back later gets its old translation back from the obsolete (#~) entries.

The checks (untranslated, fuzzy, msgstr equal to msgid, mismatched placeholders, Uzbek apostrophes) live here and
tests/test_i18n.py imports them, so the script and the test suite never disagree.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE_DIR = ROOT / "locales"
DOMAIN = "messages"
LANGUAGES: tuple[str, ...] = ("uz", "ru", "en")
SOURCE_LANGUAGE = "en"
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy_gettext": None,
    "N_": None,
}
COMMENT_TAGS = ("TRANSLATORS:",)
PO_WIDTH = 120

# msgstr may equal msgid for these in uz/ru: names of brands and products are not translated.
ALLOWED_SAME: frozenset[str] = frozenset(
    {
        "BotFactory",
        "Telegram",
        "WhatsApp",
        "Instagram",
        "Email",
        "API",
        "ID",
        "URL",
        "Gemini 2.5 Pro",
        "Google",
        "Stripe",
        "Payme",
        "Payoneer",
    }
)

# %(name)s, %d, %.1f … and the escaped %%.
PLACEHOLDER = re.compile(r"%(?:\((?P<name>\w+)\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa]|%%")
# In Uzbek Latin oʻ/gʻ take U+02BB and the tutuq belgisi takes U+02BC; ASCII or curly quotes between letters
# are the usual keyboard substitutes and look wrong next to proper text.
UZ_BAD_APOSTROPHE = re.compile(r"(?<=[^\W\d_])['‘’`´](?=[^\W\d_])")


@dataclass(frozen=True)
class Problem:
    lang: str
    kind: str  # untranslated | fuzzy | same-as-msgid | placeholders | stray-percent | apostrophe
    msgid: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"[{self.lang}] {self.kind}: {self.msgid!r}{extra}"


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"


def message_key(message: Message) -> str:
    """The singular msgid (plural entries are keyed by their singular form, as gettext does)."""
    return message.id[0] if isinstance(message.id, (list, tuple)) else message.id


# ----------------------------------------------------------------------------------------------- extraction


def extract(root: Path = ROOT) -> Catalog:
    """Every msgid in the code and templates that babel.cfg names, as a template catalog (.pot)."""
    with open(root / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    template = Catalog(project="BotFactory", version="1.0", copyright_holder="BotFactory", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root),
        method_map,
        options_map,
        keywords=KEYWORDS,
        comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
    ):
        # Drop empty msgids (a bare _("")) which gettext reserves for the header.
        if not (message[0] if isinstance(message, tuple) else message):
            continue
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def msgids(catalog: Catalog) -> set[str]:
    return {message_key(m) for m in catalog if m.id}


# ----------------------------------------------------------------------------------------------- catalogs


def load(lang: str) -> Catalog:
    path = po_path(lang)
    if not path.exists():
        return Catalog(
            locale=lang,
            domain=DOMAIN,
            project="BotFactory",
            version="1.0",
            copyright_holder="BotFactory",
            msgid_bugs_address="",
            last_translator="BotFactory",
            language_team=lang,
            charset="utf-8",
            fuzzy=False,
        )
    with open(path, "rb") as handle:
        return read_po(handle, locale=lang, domain=DOMAIN)


def save(catalog: Catalog, lang: str) -> None:
    path = po_path(lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(
        buffer,
        catalog,
        width=PO_WIDTH,
        sort_output=True,
        include_lineno=False,
        ignore_obsolete=False,
    )
    data = buffer.getvalue()
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def update(catalog: Catalog, template: Catalog) -> None:
    """Merge the template in; new msgids arrive untranslated, vanished ones become obsolete (#~)."""
    previously_obsolete = {key: msg for key, msg in catalog.obsolete.items()}
    # Babel inserts the template's Message objects themselves; a private copy keeps the catalogs independent.
    catalog.update(copy.deepcopy(template), no_fuzzy_matching=True, update_creation_date=False)
    for message in catalog:
        if not message.id or _translated(message):
            continue
        old = previously_obsolete.get(message.id) or previously_obsolete.get(message_key(message))
        if old is not None and _translated(old) and isinstance(old.id, tuple) == isinstance(message.id, tuple):
            message.string = old.string
            if old.fuzzy:
                message.flags.add("fuzzy")
    # An msgid that came back is no longer obsolete; gettext tools choke on duplicates.
    for key in list(catalog.obsolete):
        if key in catalog:
            del catalog.obsolete[key]


def fill_en(catalog: Catalog) -> int:
    """English is the source language: its msgstr is the msgid. Returns how many entries changed."""
    changed = 0
    for message in catalog:
        if not message.id:
            continue
        wanted: str | tuple[str, ...]
        if isinstance(message.id, (list, tuple)):
            forms = catalog.num_plurals
            wanted = tuple([message.id[0]] + [message.id[1]] * (forms - 1))
        else:
            wanted = message.id
        if message.string != wanted or message.fuzzy:
            message.string = wanted
            message.flags.discard("fuzzy")
            changed += 1
    return changed


def compile_catalogs(languages: Iterable[str] = LANGUAGES) -> None:
    for lang in languages:
        catalog = load(lang)
        with open(mo_path(lang), "wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)


# ----------------------------------------------------------------------------------------------- checks


def _translated(message: Message) -> bool:
    if isinstance(message.string, (list, tuple)):
        return bool(message.string) and all(message.string)
    return bool(message.string)


def _placeholders(text: str) -> tuple[set[str], int]:
    """Named placeholders, and the number of positional ones (``%s``, ``%d``); ``%%`` counts as neither."""
    names: set[str] = set()
    positional = 0
    for match in PLACEHOLDER.finditer(text):
        if match.group(0) == "%%":
            continue
        if match.group("name"):
            names.add(match.group("name"))
        else:
            positional += 1
    return names, positional


def _stray_percent(text: str) -> bool:
    """A lone % that is no placeholder: Jinja's newstyle gettext always applies ``%`` and would crash on it."""
    return "%" in PLACEHOLDER.sub("", text)


def _letters(text: str) -> bool:
    return any(ch.isalpha() for ch in PLACEHOLDER.sub("", text))


def check_message(lang: str, message: Message, num_plurals: int | None = None) -> list[Problem]:
    key = message_key(message)
    if not _translated(message):
        return [Problem(lang, "untranslated", key)]
    problems: list[Problem] = []
    if num_plurals and isinstance(message.id, (list, tuple)) and len(message.string) != num_plurals:
        problems.append(Problem(lang, "plural-forms", key, f"needs {num_plurals} forms, has {len(message.string)}"))
    if message.fuzzy:
        problems.append(Problem(lang, "fuzzy", key))
    plural = isinstance(message.id, (list, tuple))
    forms: list[str] = list(message.string) if plural else [message.string]  # type: ignore[arg-type]
    sources: list[str] = list(message.id) if plural else [message.id]  # type: ignore[arg-type]

    if lang != SOURCE_LANGUAGE and key not in ALLOWED_SAME and _letters(key):
        if any(form in sources for form in forms):
            problems.append(Problem(lang, "same-as-msgid", key, "translate it, or add a brand name to ALLOWED_SAME"))

    source_names: set[str] = set()
    source_positional = 0
    for source in sources:
        names, positional = _placeholders(source)
        source_names |= names
        source_positional = max(source_positional, positional)
    for form in forms:
        names, positional = _placeholders(form)
        # A plural form may leave out the count ("one bot"), never add or lose any other name.
        missing = (source_names - names) - ({"num"} if plural else set())
        extra = names - source_names
        if missing or extra or positional != source_positional:
            detail = f"msgstr {form!r}: missing {sorted(missing)}, unknown {sorted(extra)}"
            problems.append(Problem(lang, "placeholders", key, detail))
        if _stray_percent(form) and not any(_stray_percent(source) for source in sources):
            problems.append(Problem(lang, "stray-percent", key, f"write %% for a literal percent sign: {form!r}"))
        if lang == "uz" and UZ_BAD_APOSTROPHE.search(form):
            problems.append(
                Problem(lang, "apostrophe", key, f"use ʻ (U+02BB) in oʻ/gʻ and ʼ (U+02BC) elsewhere: {form!r}")
            )
    return problems


def check_catalog(lang: str, catalog: Catalog) -> list[Problem]:
    problems: list[Problem] = []
    for message in catalog:
        if message.id:
            problems.extend(check_message(lang, message, catalog.num_plurals))
    return problems


def missing_from_catalog(lang: str, catalog: Catalog, template: Catalog) -> list[Problem]:
    """msgids used in the code that the catalog does not have at all (extraction not run since they appeared)."""
    have = msgids(catalog)
    return [Problem(lang, "missing", key, "run scripts/i18n.py") for key in sorted(msgids(template) - have)]


# ----------------------------------------------------------------------------------------------- todo / apply


def todo(catalogs: dict[str, Catalog]) -> dict[str, object]:
    """The untranslated or fuzzy entries of uz and ru, as a JSON-ready dict to fill in."""
    out: dict[str, object] = {}
    plurals: dict[str, str] = {}
    for lang, catalog in catalogs.items():
        if lang == SOURCE_LANGUAGE:
            continue
        entries: dict[str, object] = {}
        for message in catalog:
            if not message.id or (_translated(message) and not message.fuzzy):
                continue
            key = message_key(message)
            if isinstance(message.id, (list, tuple)):
                plurals[key] = message.id[1]
                current = list(message.string) if isinstance(message.string, (list, tuple)) else []
                entries[key] = current if any(current) else [""] * catalog.num_plurals
            else:
                entries[key] = message.string or ""
        if entries:
            out[lang] = entries
    if plurals:
        out["_plurals"] = plurals
    return out


def apply(catalogs: dict[str, Catalog], translations: dict[str, dict[str, object]]) -> list[str]:
    """Write translations into the catalogs (clearing fuzzy); returns warnings for what could not be applied."""
    warnings: list[str] = []
    for lang, entries in translations.items():
        if lang.startswith("_"):
            continue
        catalog = catalogs.get(lang)
        if catalog is None:
            warnings.append(f"unknown language {lang!r}")
            continue
        by_key = {message_key(m): m for m in catalog if m.id}
        for key, value in entries.items():
            message = by_key.get(key)
            if message is None:
                warnings.append(f"[{lang}] not in the catalog (run extraction first?): {key!r}")
                continue
            if not value or (isinstance(value, list) and not all(value)):
                continue
            if isinstance(message.id, (list, tuple)):
                if not isinstance(value, list) or len(value) != catalog.num_plurals:
                    warnings.append(f"[{lang}] needs {catalog.num_plurals} plural forms: {key!r}")
                    continue
                message.string = tuple(str(form) for form in value)
            else:
                if not isinstance(value, str):
                    warnings.append(f"[{lang}] expected a string: {key!r}")
                    continue
                message.string = value
            message.flags.discard("fuzzy")
            warnings.extend(str(problem) for problem in check_message(lang, message, catalog.num_plurals))
    return warnings


# ----------------------------------------------------------------------------------------------- command line


def report(problems: list[Problem], catalogs: dict[str, Catalog]) -> None:
    for lang in catalogs:
        mine = [p for p in problems if p.lang == lang]
        total = len([m for m in catalogs[lang] if m.id])
        print(f"{lang}: {total} msgids, {len(mine)} to fix")
        for problem in mine:
            print(f"  {problem.kind}: {problem.msgid!r}" + (f"  ({problem.detail})" if problem.detail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill-en", action="store_true", help="only copy every msgid into the English msgstr")
    parser.add_argument("--todo", type=Path, help="write untranslated uz/ru entries to this JSON file")
    parser.add_argument("--apply", type=Path, help="merge translations from this JSON file")
    parser.add_argument("--compile", action="store_true", help="compile .mo files afterwards")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on any problem")
    args = parser.parse_args(argv)

    template = extract()
    catalogs = {lang: load(lang) for lang in LANGUAGES}
    problems: list[Problem] = []

    if args.check:
        for lang, catalog in catalogs.items():
            problems += missing_from_catalog(lang, catalog, template)
            problems += check_catalog(lang, catalog)
        report(problems, catalogs)
        return 1 if problems else 0

    if args.fill_en:
        fill_en(catalogs[SOURCE_LANGUAGE])
        save(catalogs[SOURCE_LANGUAGE], SOURCE_LANGUAGE)
        report(check_catalog(SOURCE_LANGUAGE, catalogs[SOURCE_LANGUAGE]), {SOURCE_LANGUAGE: catalogs[SOURCE_LANGUAGE]})
        return 0

    for catalog in catalogs.values():
        update(catalog, template)
    fill_en(catalogs[SOURCE_LANGUAGE])
    if args.apply:
        translations = json.loads(args.apply.read_text(encoding="utf-8"))
        for warning in apply(catalogs, translations):
            print("warning:", warning, file=sys.stderr)
    for lang, catalog in catalogs.items():
        save(catalog, lang)
        problems += check_catalog(lang, catalog)
    if args.todo:
        args.todo.write_text(json.dumps(todo(catalogs), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.todo}")
    if args.compile:
        compile_catalogs()
    report(problems, catalogs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
