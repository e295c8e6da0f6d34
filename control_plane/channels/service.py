"""Telegram channel rules: connect (validate, store encrypted, webhook or polling), disconnect, state, the webhook
ingress, the webhook health check, and the channel's slice of a tenant's runtime config.

Services flush and never commit (the request or the job owns the transaction). The token is kept only as
``security.encrypt`` ciphertext plus a keyed fingerprint; the webhook secret is random per bot and stored encrypted
in the connection's settings. Telegram side effects happen after the database accepted the row (so a token held
by another bot is refused before its webhook could be stolen) and before the commit (so a refused setWebhook saves
nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.limits import TenantSuspended
from billing.plans import plan_for
from bot_runtime import contract
from bot_runtime.channels.poller import update_event
from bot_runtime.i18n import N_, gettext, use_locale
from control_plane.accounts import repository as accounts_repository
from control_plane.bots import repository as bots_repository
from control_plane.channels import repository
from control_plane.channels.errors import (
    ChannelNotInPlan,
    MalformedUpdate,
    TelegramTokenInUse,
    TelegramTokenRejected,
    WebhookSecretMismatch,
)
from control_plane.channels.repository import TELEGRAM
from control_plane.channels.schemas import TelegramConnected, TelegramMode, TelegramState, TelegramWebhookHealth
from control_plane.channels.telegram import TelegramClient
from control_plane.kit import security
from control_plane.kit.errors import AppError, NotFound
from control_plane.kit.mail import Mail, send_mail
from control_plane.kit.redis import get_redis, key
from control_plane.kit.tenancy import TenantContext
from control_plane.models import Bot, ChannelConnection, Tenant, User
from control_plane.runtimes.publish import publish_after_commit, wake_tenant
from control_plane.settings import Settings, get_settings

log = logging.getLogger("botfactory.channels")

TELEGRAM_WEBHOOK_PORTS = frozenset({443, 80, 88, 8443})
WEBHOOK_TARGET_TTL_SECONDS = 300
# A webhook error younger than this, with updates still waiting, means "broken" (the check runs every 10 minutes).
WEBHOOK_ERROR_WINDOW = timedelta(minutes=30)

STATUS_CONNECTED = "connected"
STATUS_WEBHOOK_FAILING = "webhook_failing"
STATUS_TOKEN_REJECTED = "token_rejected"


# ---------------------------------------------------------------------------------------------------------------------
# Mode


def _public_host(host: str) -> bool:
    host = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    if "." not in host or host == "localhost":
        return False
    return not host.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test", ".invalid"))


def webhook_reachable(domain_url: str) -> bool:
    """Whether Telegram could call us at ``domain_url``: https, a port it allows (443/80/88/8443), a public host."""
    parts = urlsplit(domain_url)
    if parts.scheme != "https" or not parts.hostname:
        return False
    try:
        port = parts.port or 443
    except ValueError:
        return False
    return port in TELEGRAM_WEBHOOK_PORTS and _public_host(parts.hostname)


def choose_mode(settings: Settings | None = None) -> TelegramMode:
    """TELEGRAM_MODE, where ``auto`` means webhook exactly when DOMAIN_URL is reachable by Telegram."""
    settings = settings or get_settings()
    if settings.telegram_mode == "auto":
        return "webhook" if webhook_reachable(settings.domain_url) else "polling"
    return settings.telegram_mode


def webhook_url(bot_id: uuid.UUID) -> str:
    return f"{get_settings().domain_url.rstrip('/')}/webhooks/telegram/{bot_id}"


# ---------------------------------------------------------------------------------------------------------------------
# Secrets at rest


def _encrypt_credentials(token: str) -> bytes:
    return security.encrypt(json.dumps({"token": token}))


def stored_token(connection: ChannelConnection) -> str:
    """The plaintext token of a connection (kept in memory only as long as a call needs it)."""
    return str(json.loads(security.decrypt(connection.credentials_encrypted))["token"])


def _readable_token(connection: ChannelConnection) -> str | None:
    # A row written under an ENCRYPTION_KEY since dropped can't be read: treat it as a token being replaced.
    try:
        return stored_token(connection)
    except RuntimeError:
        log.error("channels.telegram.credentials_unreadable", extra={"bot_id": str(connection.bot_id)})
        return None


def _stored_secret(connection: ChannelConnection) -> str | None:
    encrypted = connection.settings.get("webhook_secret")
    return security.decrypt(str(encrypted).encode()) if encrypted else None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# Connect, disconnect, state


def _ensure_telegram_allowed(tenant: Tenant) -> None:
    if tenant.status == "suspended":
        raise TenantSuspended()
    if TELEGRAM not in plan_for(tenant.plan).channels:
        raise ChannelNotInPlan()


async def connect_telegram(
    db: AsyncSession, ctx: TenantContext, bot: Bot, token: str, *, ip: str = ""
) -> TelegramConnected:
    """Connect ``bot`` to the Telegram bot behind ``token``, or switch it to a new token (the old one's webhook is
    removed). The caller loaded ``bot`` with the editor role."""
    _ensure_telegram_allowed(ctx.tenant)
    fingerprint = security.fingerprint(token, purpose=TELEGRAM)
    holder = await repository.by_fingerprint(db, TELEGRAM, fingerprint)
    if holder is not None and holder.bot_id != bot.id:
        raise TelegramTokenInUse()
    connection = await repository.connection(db, ctx, bot.id, TELEGRAM)
    previous_token = _readable_token(connection) if connection is not None else None
    same_token = previous_token == token
    mode = choose_mode()

    async with TelegramClient(token) as telegram:
        me = await telegram.get_me()
        secret: str | None = None
        if mode == "webhook":
            # Keep the secret when nothing changes, so Telegram's deliveries in flight stay valid.
            secret = (_stored_secret(connection) if connection is not None and same_token else None) or (
                secrets.token_urlsafe(32)
            )
        if connection is None:
            connection = ChannelConnection(tenant_id=ctx.tenant_id, bot_id=bot.id, kind=TELEGRAM)
            repository.add(db, connection)
        connection.credentials_encrypted = _encrypt_credentials(token)
        connection.credential_fingerprint = fingerprint
        connection.external_id = str(me.id)
        connection.display_name = me.username
        connection.status = STATUS_CONNECTED
        settings: dict[str, object] = {"mode": mode, "username": me.username, "connected_at": _now().isoformat()}
        if secret is not None:
            settings["webhook_secret"] = security.encrypt(secret).decode()
        connection.settings = settings
        try:
            await db.flush()
        except IntegrityError:
            # Another request connected the same token (or this bot) a moment ago.
            raise TelegramTokenInUse() from None

        if secret is not None:
            await telegram.set_webhook(webhook_url(bot.id), secret_token=secret)
        else:
            await telegram.delete_webhook()
        try:
            await telegram.set_commands()
        except AppError:
            log.warning("channels.telegram.commands_failed", extra={"bot_id": str(bot.id)})

    if previous_token is not None and not same_token:
        await _release_token(previous_token, bot.id)
    await forget_webhook_target(bot.id)
    bots_repository.add_audit(
        db,
        ctx,
        "channel.telegram.connected",
        bot,
        data={"username": me.username, "mode": mode, "token_changed": previous_token is not None and not same_token},
        ip=ip,
    )
    publish_config(db, ctx.tenant_id)
    return TelegramConnected(bot_username=me.username, mode=mode)


async def _release_token(token: str, bot_id: uuid.UUID) -> None:
    """Stop Telegram calling us for a token this bot no longer uses. Best effort: it may be revoked already."""
    try:
        async with TelegramClient(token) as telegram:
            await telegram.delete_webhook()
    except AppError:
        log.info("channels.telegram.release_failed", extra={"bot_id": str(bot_id)})


async def disconnect_telegram(db: AsyncSession, ctx: TenantContext, bot: Bot, *, ip: str = "") -> None:
    """Remove the bot's Telegram connection (and its webhook at Telegram). Disconnecting twice is not an error."""
    connection = await repository.connection(db, ctx, bot.id, TELEGRAM)
    if connection is None:
        return
    token = _readable_token(connection)
    if token is not None:  # an unreadable token can't be released at Telegram, but the row must still go
        await _release_token(token, bot.id)
    username = connection.display_name
    await repository.delete(db, connection)
    await db.flush()
    await forget_webhook_target(bot.id)
    bots_repository.add_audit(db, ctx, "channel.telegram.disconnected", bot, data={"username": username}, ip=ip)
    publish_config(db, ctx.tenant_id)


async def telegram_state(db: AsyncSession, ctx: TenantContext, bot: Bot) -> TelegramState:
    """Whether the bot is connected, how, and what Telegram says about the webhook (best effort)."""
    connection = await repository.connection(db, ctx, bot.id, TELEGRAM)
    if connection is None:
        return TelegramState(connected=False)
    mode = connection.settings.get("mode")
    health: TelegramWebhookHealth | None = None
    try:
        async with TelegramClient(stored_token(connection), timeout=5.0) as telegram:
            info = await telegram.webhook_info()
        health = TelegramWebhookHealth(
            url=info.url,
            pending_update_count=info.pending_update_count,
            last_error_message=info.last_error_message,
            last_error_date=info.last_error_date,
        )
    except (AppError, RuntimeError):
        health = None
    return TelegramState(
        connected=True,
        bot_username=connection.display_name or None,
        mode=mode if mode in ("webhook", "polling") else None,  # type: ignore[arg-type]
        status=connection.status,
        webhook=health,
    )


def publish_config(db: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Republish the tenant's runtime config once this transaction commits (nothing on rollback)."""
    publish_after_commit(db, tenant_id)


# ---------------------------------------------------------------------------------------------------------------------
# Webhook ingress


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where a bot's webhook calls go, and the hash of the secret they must carry."""

    tenant_id: str
    secret_sha256: str


def _target_key(bot_id: uuid.UUID) -> str:
    return key("tg", "webhook", bot_id)


async def forget_webhook_target(bot_id: uuid.UUID) -> None:
    await get_redis().delete(_target_key(bot_id))


async def _cached_target(bot_id: uuid.UUID) -> WebhookTarget | None:
    raw = await get_redis().get(_target_key(bot_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return WebhookTarget(tenant_id=data["tenant_id"], secret_sha256=data["secret_sha256"])


async def _load_target(db: AsyncSession, bot_id: uuid.UUID) -> WebhookTarget | None:
    connection = await repository.webhook_target(db, bot_id, TELEGRAM)
    secret = _stored_secret(connection) if connection is not None else None
    if connection is None or secret is None:
        return None  # unknown bot, or a polling bot: nobody should be calling this webhook
    target = WebhookTarget(tenant_id=str(connection.tenant_id), secret_sha256=_sha256(secret))
    # Only the hash is cached: Redis never sees the secret itself.
    value = json.dumps({"tenant_id": target.tenant_id, "secret_sha256": target.secret_sha256})
    await get_redis().set(_target_key(bot_id), value, ex=WEBHOOK_TARGET_TTL_SECONDS)
    return target


async def verify_telegram_webhook(db: AsyncSession, bot_id: uuid.UUID, secret_header: str | None) -> WebhookTarget:
    """The webhook's tenant, once the ``X-Telegram-Bot-Api-Secret-Token`` header matched (constant-time)."""
    presented = _sha256(secret_header or "")
    target = await _cached_target(bot_id)
    if target is not None and secret_header and hmac.compare_digest(target.secret_sha256, presented):
        return target
    # A miss or a mismatch re-reads the database: the secret may have changed since it was cached.
    target = await _load_target(db, bot_id)
    if target is None:
        raise NotFound()
    if not secret_header or not hmac.compare_digest(target.secret_sha256, presented):
        log.warning("channels.telegram.webhook_secret_mismatch", extra={"bot_id": str(bot_id)})
        raise WebhookSecretMismatch()
    return target


def parse_update(body: bytes) -> dict[str, Any]:
    try:
        update = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: absurd nesting
        raise MalformedUpdate() from None
    if (
        not isinstance(update, dict)
        or not isinstance(update.get("update_id"), int)
        or isinstance(update.get("update_id"), bool)
    ):
        raise MalformedUpdate()
    return update


async def enqueue_telegram_update(target: WebhookTarget, bot_id: uuid.UUID, update: dict[str, Any]) -> None:
    """Queue the update on the tenant's inbound stream and wake its runtime.

    Also for a suspended or lapsed tenant: Telegram must get its 200 (else it retries and reports the webhook as
    failing), and the entry waits in the stream, which is primary data, until the runtime starts again. Duplicate
    deliveries of one update_id are queued twice and processed once: the runtime dedupes on the event id.
    """
    redis = get_redis()
    event = update_event(str(bot_id), update)
    await redis.xadd(contract.inbound_stream(target.tenant_id), event.to_fields())
    # After the XADD, so a runtime going idle right now either sees the entry or is woken for it.
    await wake_tenant(redis, target.tenant_id)


# ---------------------------------------------------------------------------------------------------------------------
# Webhook health


@dataclass(frozen=True, slots=True)
class WebhookProblem:
    status: str
    detail: str  # English, from Telegram or from us; shown to the owner inside a translated sentence


async def _webhook_problem(connection: ChannelConnection) -> WebhookProblem | None:
    """What is wrong with the bot's webhook, or None. Raises TelegramUnavailable when Telegram can't be asked."""
    try:
        async with TelegramClient(stored_token(connection)) as telegram:
            info = await telegram.webhook_info()
    except TelegramTokenRejected:
        return WebhookProblem(STATUS_TOKEN_REJECTED, "Telegram no longer accepts the bot token")
    expected = webhook_url(connection.bot_id)
    if info.url != expected:
        return WebhookProblem(STATUS_WEBHOOK_FAILING, f"the webhook is {info.url or 'not set'}, expected {expected}")
    error_at = info.last_error_date
    if error_at is not None and info.pending_update_count > 0 and _now() - error_at < WEBHOOK_ERROR_WINDOW:
        return WebhookProblem(STATUS_WEBHOOK_FAILING, info.last_error_message or "delivery failed")
    return None


async def check_tenant_telegram_webhooks(db: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Check every webhook-mode Telegram connection of one tenant; returns how many are broken.

    A connection that turns broken gets status ``webhook_failing`` / ``token_rejected`` and its owners are told
    (once per connection and day); one that recovers goes back to ``connected``. Telegram being unreachable says
    nothing about the bot, so it changes nothing.
    """
    broken = 0
    for connection, bot in await repository.webhook_connections(db, tenant_id, TELEGRAM):
        try:
            problem = await _webhook_problem(connection)
        except AppError:
            log.warning("channels.telegram.health_unknown", extra={"tenant_id": str(tenant_id), "bot_id": str(bot.id)})
            continue
        health: dict[str, object] = {"checked_at": _now().isoformat()}
        if problem is None:
            if connection.status != STATUS_CONNECTED:
                log.info(
                    "channels.telegram.webhook_recovered", extra={"tenant_id": str(tenant_id), "bot_id": str(bot.id)}
                )
            connection.status = STATUS_CONNECTED
        else:
            broken += 1
            health["problem"] = problem.detail
            newly_broken = connection.status == STATUS_CONNECTED
            connection.status = problem.status
            log.warning(
                "channels.telegram.webhook_broken",
                extra={"tenant_id": str(tenant_id), "bot_id": str(bot.id), "problem": problem.detail},
            )
            if newly_broken:
                await _notify_owners(db, connection, bot, problem)
        connection.settings = {**connection.settings, "health": health}
    await db.flush()
    return broken


BROKEN_SUBJECT = N_("Your Telegram bot @%(username)s has stopped receiving messages")
BROKEN_BODY = N_(
    "Telegram cannot deliver messages to your bot @%(username)s (%(bot)s). What Telegram reports: %(problem)s.\n\n"
    "Customers' messages are not reaching the bot. To repair it, open BotFactory (%(url)s), go to the bot's "
    "Telegram settings and connect the token again; if you revoked the token in @BotFather, paste the new one."
)


async def _notify_owners(db: AsyncSession, connection: ChannelConnection, bot: Bot, problem: WebhookProblem) -> None:
    day = _now().strftime("%Y%m%d")
    owners: list[User] = await accounts_repository.tenant_owners(db, connection.tenant_id)
    for owner in owners:
        inserted = await accounts_repository.add_notification_once(
            db,
            tenant_id=connection.tenant_id,
            user_id=owner.id,
            kind="telegram.webhook_broken",
            dedupe_key=f"telegram.webhook_broken:{connection.id}:{owner.id}:{day}",
            payload={"bot_id": str(bot.id), "username": connection.display_name, "problem": problem.detail},
        )
        if not inserted:
            continue
        params = {
            "username": connection.display_name,
            "bot": bot.name,
            "problem": problem.detail,
            "url": get_settings().domain_url,
        }
        with use_locale(owner.language):
            subject = gettext(BROKEN_SUBJECT, **params)
            text = gettext(BROKEN_BODY, **params)
        await send_mail(db, Mail(to=owner.email, subject=subject, text=text))


def _now() -> datetime:
    return datetime.now(UTC)
