"""Outgoing email behind one small interface: SMTP when SMTP_HOST is set, else the ``outbox_emails`` table.

Mail belongs to the request's transaction: both senders add an ``outbox_emails`` row to it, so a rolled-back request
never mails a link to a token that was never stored. The SMTP sender then delivers after commit from a worker thread
(smtplib blocks, and a slow mail server must not hold a database connection) and records the outcome on the row. A
failed delivery is not lost: ``deliver_due`` (a scheduler job, every minute) retries it with growing pauses until it
is sent or ``MAX_ATTEMPTS`` is reached. Once a row is done its bodies are blanked, since they may carry sign-in links.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import OutboxEmail
from control_plane.settings import Settings, get_settings

log = logging.getLogger("botfactory.mail")

MAX_ATTEMPTS = 8
# The after-commit delivery owns a new row for this long; only then may the retry job take it.
FIRST_RETRY_AFTER = timedelta(minutes=5)
# Pause before retry n (1, 2, ...): 1, 2, 4 ... minutes, at most 2 hours; 8 attempts span about 4 hours.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=2)


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
_pending: set[asyncio.Task[Any]] = set()


def retry_pause(attempts: int) -> timedelta:
    return min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))


async def _deliver_in_thread(settings: Settings, mail: Mail, row_id: Any) -> bool:
    """Deliver and record the outcome on the mail's row; True when it was sent."""
    try:
        await asyncio.to_thread(deliver_smtp, settings, mail)
    except (OSError, smtplib.SMTPException) as exc:
        # The account action already succeeded; the row keeps the mail for the retry job.
        log.exception("mail.failed", extra={"subject": mail.subject})
        await _record(row_id, error=repr(exc))
        return False
    log.info("mail.sent", extra={"subject": mail.subject})
    await _record(row_id, error=None)
    return True


async def _record(row_id: Any, *, error: str | None) -> None:
    from control_plane.kit.db import get_sessionmaker

    done = {"next_attempt_at": None, "body_text": "", "body_html": ""}
    async with get_sessionmaker()() as db, db.begin():
        row = await db.get(OutboxEmail, row_id, with_for_update=True)
        if row is None or row.sent_at is not None:
            return
        if error is None:
            values: dict[str, Any] = {"sent_at": datetime.now(UTC), "last_error": None, **done}
        else:
            attempts = row.attempts + 1
            values = {"attempts": attempts, "last_error": error[:1000]}
            if attempts >= MAX_ATTEMPTS:
                values.update(done)
                log.error("mail.given_up", extra={"subject": row.subject, "attempts": attempts})
            else:
                values["next_attempt_at"] = datetime.now(UTC) + retry_pause(attempts)
        await db.execute(update(OutboxEmail).where(OutboxEmail.id == row_id).values(**values))


async def deliver_due(*, limit: int = 50) -> dict[str, int]:
    """Retry SMTP deliveries that failed or were never finished (the process died after commit). Returns counts.

    Each row is claimed first (its next attempt moved past the delivery's own duration, FOR UPDATE SKIP LOCKED), so
    two workers never send the same mail at once.
    """
    from control_plane.kit.db import get_sessionmaker

    settings = get_settings()
    if not settings.smtp_host:
        return {"due": 0, "sent": 0, "failed": 0}
    now = datetime.now(UTC)
    async with get_sessionmaker()() as db, db.begin():
        rows = list(
            await db.scalars(
                select(OutboxEmail)
                .where(OutboxEmail.sent_at.is_(None), OutboxEmail.next_attempt_at <= now)
                .order_by(OutboxEmail.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        for row in rows:
            row.next_attempt_at = now + FIRST_RETRY_AFTER
        claimed = [
            (row.id, Mail(to=row.to_address, subject=row.subject, text=row.body_text, html=row.body_html))
            for row in rows
        ]
    sent = 0
    for row_id, mail in claimed:
        sent += await _deliver_in_thread(settings, mail, row_id)
    if claimed:
        log.info("mail.retried", extra={"due": len(claimed), "sent": sent})
    return {"due": len(claimed), "sent": sent, "failed": len(claimed) - sent}


class SmtpSender:
    """Delivers through SMTP after the surrounding transaction commits; nothing is sent on rollback."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, db: AsyncSession, mail: Mail) -> None:
        settings = self.settings
        state = {"cancelled": False, "queued": False}
        # The row opens the transaction, so its commit or rollback (not a later one) decides about this mail.
        row = OutboxEmail(
            to_address=mail.to,
            subject=mail.subject,
            body_text=mail.text,
            body_html=mail.html,
            next_attempt_at=datetime.now(UTC) + FIRST_RETRY_AFTER,
        )
        db.add(row)
        await db.flush()
        row_id = row.id

        def after_commit(_session: Any) -> None:
            if state["cancelled"] or state["queued"]:
                return
            state["queued"] = True
            # Runs inside AsyncSession.commit() on the event loop's thread, so the running loop is reachable.
            task = asyncio.get_running_loop().create_task(_deliver_in_thread(settings, mail, row_id))
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
