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
