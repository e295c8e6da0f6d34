"""The account emails (verification, password reset), composed in the recipient's saved language.

Every sentence is a msgid here, so the text and HTML bodies say the same thing and both are extracted from Python;
``templates/accounts/email.html`` only lays the already-translated parts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from bot_runtime.i18n import gettext as _
from bot_runtime.i18n import use_locale
from control_plane.kit.mail import Mail
from control_plane.kit.templating import env
from control_plane.models import User
from control_plane.settings import get_settings


@dataclass(frozen=True, slots=True)
class _Parts:
    subject: str
    greeting: str
    lines: tuple[str, ...]
    action: str
    link: str
    footer: str


def link(lang: str, page: str, token: str) -> str:
    """An absolute link to a page of the web app, in ``lang``, carrying the emailed token."""
    base = get_settings().domain_url.rstrip("/")
    return f"{base}/{lang}/{page}?{urlencode({'token': token})}"


def _compose(user: User, parts: _Parts) -> Mail:
    text = "\n\n".join([parts.greeting, *parts.lines, f"{parts.action}: {parts.link}", parts.footer]) + "\n"
    html = env.get_template("accounts/email.html").render(parts=parts, lang=user.language)
    return Mail(to=user.email, subject=parts.subject, text=text, html=html)


def verification_mail(user: User, token: str) -> Mail:
    """The "confirm your email address" mail with a single-use link."""
    hours = get_settings().email_verification_ttl_seconds // 3600
    with use_locale(user.language) as lang:
        parts = _Parts(
            subject=_("Confirm your email address"),
            greeting=_("Hello %(name)s,", name=user.name or user.email),
            lines=(
                _("Thank you for signing up for BotFactory. Please confirm that this is your email address."),
                _("The link works once and expires in %(hours)s hours.", hours=hours),
            ),
            action=_("Confirm email address"),
            link=link(lang, "verify-email", token),
            footer=_("If you did not create a BotFactory account, you can ignore this email."),
        )
        return _compose(user, parts)


def password_reset_mail(user: User, token: str) -> Mail:
    """The "choose a new password" mail with a single-use link."""
    minutes = max(get_settings().password_reset_ttl_seconds // 60, 1)
    with use_locale(user.language) as lang:
        parts = _Parts(
            subject=_("Reset your BotFactory password"),
            greeting=_("Hello %(name)s,", name=user.name or user.email),
            lines=(
                _("Someone asked to reset the password of your BotFactory account."),
                _("The link works once and expires in %(minutes)s minutes.", minutes=minutes),
            ),
            action=_("Choose a new password"),
            link=link(lang, "password-reset", token),
            footer=_("If you did not ask for this, ignore this email: your password stays the same."),
        )
        return _compose(user, parts)
