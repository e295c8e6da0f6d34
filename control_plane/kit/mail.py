"""Outgoing email behind one small interface: SMTP when SMTP_HOST is set, else the ``outbox_emails`` table.

Mail belongs to the request's transaction. The outbox sender adds a row to it; the SMTP sender waits until the
transaction commits and then delivers from a worker thread (smtplib blocks), so a rolled-back request never mails a
link to a token that was never stored, and a slow mail server never holds a database connection.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import OutboxEmail
from control_plane.settings import Settings, get_settings

log = logging.getLogger("botfactory.mail")


@dataclass(frozen=True, slots=True)
class Mail:
    """One message, already rendered in the recipient's language."""

    to: str
    subject: str
    text: str
    html: str = ""


class MailSender(Protocol):
    """Where mail goes; ``send`` ties delivery to the session's transaction."""

    async def send(self, db: AsyncSession, mail: Mail) -> None: ...


class OutboxSender:
    """Stores mail in ``outbox_emails`` (development shows it at /{lang}/dev/outbox)."""

    async def send(self, db: AsyncSession, mail: Mail) -> None:
        db.add(OutboxEmail(to_address=mail.to, subject=mail.subject, body_text=mail.text, body_html=mail.html))
        await db.flush()


def build_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    message.set_content(mail.text)
    if mail.html:
        message.add_alternative(mail.html, subtype="html")
    return message


def deliver_smtp(settings: Settings, mail: Mail) -> None:
    """Blocking SMTP delivery (run in a thread): STARTTLS on 587, implicit TLS on 465, login when configured."""
    message = build_message(mail, settings.smtp_from)
    timeout = settings.smtp_timeout_seconds
    smtp: smtplib.SMTP
    if settings.smtp_port == 465:
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with smtp:
        if settings.smtp_port != 465 and settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


# Deliveries in flight: asyncio keeps only weak references to tasks, so a fire-and-forget task needs a home.
_pending: set[asyncio.Task[None]] = set()


async def _deliver_in_thread(settings: Settings, mail: Mail) -> None:
    try:
        await asyncio.to_thread(deliver_smtp, settings, mail)
        log.info("mail.sent", extra={"subject": mail.subject})
    except (OSError, smtplib.SMTPException):
        # The account action already succeeded; the user can ask for the mail again (resend / new reset link).
        log.exception("mail.failed", extra={"subject": mail.subject})


class SmtpSender:
    """Delivers through SMTP after the surrounding transaction commits; nothing is sent on rollback."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, db: AsyncSession, mail: Mail) -> None:
        settings = self.settings
        state = {"cancelled": False, "queued": False}
        # Make sure a transaction is open, so its commit or rollback (not a later one) decides about this mail.
        await db.connection()

        def after_commit(_session: Any) -> None:
            if state["cancelled"] or state["queued"]:
                return
            state["queued"] = True
            # Runs inside AsyncSession.commit() on the event loop's thread, so the running loop is reachable.
            task = asyncio.get_running_loop().create_task(_deliver_in_thread(settings, mail))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        def after_rollback(_session: Any) -> None:
            if not state["queued"]:
                state["cancelled"] = True

        event.listen(db.sync_session, "after_commit", after_commit)
        event.listen(db.sync_session, "after_rollback", after_rollback)


async def drain() -> None:
    """Wait for deliveries in flight (shutdown and tests)."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


def get_sender() -> MailSender:
    settings = get_settings()
    return SmtpSender(settings) if settings.smtp_host else OutboxSender()


async def send_mail(db: AsyncSession, mail: Mail) -> None:
    """Send ``mail`` with the configured sender as part of ``db``'s transaction."""
    await get_sender().send(db, mail)
