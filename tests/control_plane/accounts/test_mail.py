"""The mail sender (control_plane/kit/mail.py): outbox rows without SMTP; SMTP only after the transaction commits."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.control_plane.accounts.helpers import settings_override


class RecordingSMTP:
    """Stands in for smtplib.SMTP and records what the sender does with it."""

    sent: list[object] = []
    calls: list[str] = []

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.calls.append(f"connect {host}:{port}")

    def __enter__(self) -> RecordingSMTP:
        return self

    def __exit__(self, *args: object) -> None:
        self.calls.append("quit")

    def starttls(self, context: object = None) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")

    def send_message(self, message: object) -> None:
        self.sent.append(message)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import control_plane.kit.mail as mail

    RecordingSMTP.sent, RecordingSMTP.calls = [], []
    monkeypatch.setattr(mail.smtplib, "SMTP", RecordingSMTP)
    with settings_override(monkeypatch, smtp_host="smtp.example", smtp_username="mailer", smtp_password="pw"):
        yield RecordingSMTP


async def test_without_smtp_mail_goes_to_the_outbox() -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.kit.mail import Mail, OutboxSender, get_sender, send_mail
    from control_plane.models import OutboxEmail

    assert isinstance(get_sender(), OutboxSender)
    async with get_sessionmaker()() as db:
        await send_mail(db, Mail(to="a@example.com", subject="Hi", text="Hello", html="<p>Hello</p>"))
        await db.rollback()  # part of the transaction: a rolled-back request leaves nothing behind
        await send_mail(db, Mail(to="a@example.com", subject="Hi", text="Hello"))
        await db.commit()
        assert await db.scalar(select(func.count()).select_from(OutboxEmail)) == 1


async def test_smtp_sends_only_after_commit(smtp) -> None:  # type: ignore[no-untyped-def]
    from control_plane.kit import mail
    from control_plane.kit.db import get_sessionmaker

    async with get_sessionmaker()() as db:
        assert isinstance(mail.get_sender(), mail.SmtpSender)
        await mail.send_mail(db, mail.Mail(to="gone@example.com", subject="Rolled back", text="x"))
        await db.rollback()
        await db.commit()
        await mail.drain()
        assert smtp.sent == []

        await mail.send_mail(db, mail.Mail(to="b@example.com", subject="Welcome", text="Plain", html="<b>Rich</b>"))
        assert smtp.sent == []  # nothing leaves before the commit
        await db.commit()
        await mail.drain()
    assert len(smtp.sent) == 1
    message = smtp.sent[0]
    assert (message["To"], message["Subject"]) == ("b@example.com", "Welcome")
    assert message.get_body(("plain",)).get_content().strip() == "Plain"
    assert "<b>Rich</b>" in message.get_body(("html",)).get_content()
    assert smtp.calls == ["connect smtp.example:587", "starttls", "login mailer", "quit"]


async def test_smtp_failure_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import control_plane.kit.mail as mail
    from control_plane.kit.db import get_sessionmaker

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr(mail.smtplib, "SMTP", refuse)
    with settings_override(monkeypatch, smtp_host="127.0.0.1", smtp_port=1):
        async with get_sessionmaker()() as db:
            await mail.send_mail(db, mail.Mail(to="c@example.com", subject="S", text="T"))
            await db.commit()
            await mail.drain()
    assert any(record.message == "mail.failed" for record in caplog.records)


async def _row(subject: str):  # type: ignore[no-untyped-def]
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import OutboxEmail

    async with get_sessionmaker()() as db:
        return await db.scalar(select(OutboxEmail).where(OutboxEmail.subject == subject))


async def _make_due(subject: str, **values: object) -> None:
    from sqlalchemy import update

    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import OutboxEmail

    async with get_sessionmaker()() as db, db.begin():
        await db.execute(
            update(OutboxEmail)
            .where(OutboxEmail.subject == subject)
            .values(next_attempt_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1), **values)
        )


async def test_a_sent_mail_keeps_a_record_without_its_body(smtp) -> None:  # type: ignore[no-untyped-def]
    from control_plane.kit import mail
    from control_plane.kit.db import get_sessionmaker

    async with get_sessionmaker()() as db:
        await mail.send_mail(db, mail.Mail(to="d@example.com", subject="Reset", text="https://x/reset?t=secret"))
        await db.commit()
    await mail.drain()
    row = await _row("Reset")
    assert row.sent_at is not None and row.next_attempt_at is None and row.attempts == 0
    assert row.body_text == "" and row.body_html == ""  # the link does not stay in the database
    assert (await mail.deliver_due())["due"] == 0
    # A delivery record, not development mail: the outbox page does not list it.
    from control_plane.accounts.repository import recent_outbox

    async with get_sessionmaker()() as db:
        assert await recent_outbox(db, limit=10) == []


async def test_a_refused_mail_is_retried_until_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    import control_plane.kit.mail as mail
    from control_plane.kit.db import get_sessionmaker

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr(mail.smtplib, "SMTP", refuse)
    with settings_override(monkeypatch, smtp_host="smtp.example", smtp_username="mailer", smtp_password="pw"):
        async with get_sessionmaker()() as db:
            await mail.send_mail(db, mail.Mail(to="e@example.com", subject="Verify", text="https://x/verify?t=1"))
            await db.commit()
        await mail.drain()
        row = await _row("Verify")
        assert row.sent_at is None and row.attempts == 1 and "no mail server" in row.last_error
        assert row.body_text  # kept for the retry
        assert (await mail.deliver_due())["due"] == 0  # its pause has not passed yet

        await _make_due("Verify")
        assert await mail.deliver_due() == {"due": 1, "sent": 0, "failed": 1}
        assert (await _row("Verify")).attempts == 2

        RecordingSMTP.sent, RecordingSMTP.calls = [], []
        monkeypatch.setattr(mail.smtplib, "SMTP", RecordingSMTP)
        await _make_due("Verify")
        assert await mail.deliver_due() == {"due": 1, "sent": 1, "failed": 0}
        assert await mail.deliver_due() == {"due": 0, "sent": 0, "failed": 0}
    assert [message["Subject"] for message in RecordingSMTP.sent] == ["Verify"]
    assert RecordingSMTP.sent[0].get_body(("plain",)).get_content().strip() == "https://x/verify?t=1"
    row = await _row("Verify")
    assert row.sent_at is not None and row.body_text == ""


async def test_a_mail_is_given_up_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    import control_plane.kit.mail as mail
    from control_plane.kit.db import get_sessionmaker

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr(mail.smtplib, "SMTP", refuse)
    with settings_override(monkeypatch, smtp_host="smtp.example"):
        async with get_sessionmaker()() as db:
            await mail.send_mail(db, mail.Mail(to="f@example.com", subject="Doomed", text="link"))
            await db.commit()
        await mail.drain()
        await _make_due("Doomed", attempts=mail.MAX_ATTEMPTS - 1)
        assert (await mail.deliver_due())["failed"] == 1
        row = await _row("Doomed")
        assert row.attempts == mail.MAX_ATTEMPTS and row.next_attempt_at is None and row.sent_at is None
        assert row.body_text == "" and "no mail server" in row.last_error
        assert (await mail.deliver_due())["due"] == 0


async def test_two_workers_never_send_one_mail_twice(smtp, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from control_plane.kit import mail
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import OutboxEmail

    async with get_sessionmaker()() as db, db.begin():
        for index in range(6):
            db.add(OutboxEmail(to_address=f"g{index}@example.com", subject=f"Left {index}", body_text="t"))
    for index in range(6):  # what a web process that died after its commits leaves behind
        await _make_due(f"Left {index}")
    first, second = await asyncio.gather(mail.deliver_due(), mail.deliver_due())
    assert first["sent"] + second["sent"] == 6
    assert sorted(message["To"] for message in smtp.sent) == [f"g{index}@example.com" for index in range(6)]


async def test_development_outbox_mail_is_never_mailed(monkeypatch: pytest.MonkeyPatch) -> None:
    from control_plane.kit import mail
    from control_plane.kit.db import get_sessionmaker

    async with get_sessionmaker()() as db:
        await mail.send_mail(db, mail.Mail(to="h@example.com", subject="Dev only", text="t"))
        await db.commit()
    monkeypatch.setattr(mail.smtplib, "SMTP", RecordingSMTP)
    RecordingSMTP.sent = []
    with settings_override(monkeypatch, smtp_host="smtp.example"):
        assert (await mail.deliver_due())["due"] == 0
    assert RecordingSMTP.sent == []
    assert (await _row("Dev only")).body_text == "t"
