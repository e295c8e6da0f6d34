"""Errors of the channels feature; each carries its HTTP status and a translated message (see kit.errors)."""

from __future__ import annotations

from billing.limits import PlanLimitReached
from bot_runtime.i18n import N_
from control_plane.kit.errors import AppError, Conflict


class TelegramTokenRejected(AppError):
    """getMe said no: the token is revoked, mistyped or belongs to no bot. Nothing was saved."""

    status_code = 400
    code = "telegram_token_rejected"
    message = N_(
        "Telegram did not accept this token. Copy the whole token from @BotFather again, or create a new one there "
        "with /token."
    )


class TelegramUnavailable(AppError):
    """The Bot API could not be reached (network, timeout, flood control). Nothing was saved."""

    status_code = 503
    code = "telegram_unavailable"
    message = N_("We could not reach Telegram just now. Please try again in a minute.")


class TelegramRequestFailed(AppError):
    """Telegram answered, but refused a setup call (e.g. the webhook address). Nothing was saved."""

    status_code = 502
    code = "telegram_error"
    message = N_("Telegram refused to set up the bot. Please try again later; if it keeps happening, contact support.")


class TelegramTokenInUse(Conflict):
    code = "telegram_token_in_use"
    message = N_(
        "This token is already connected to another bot. Disconnect it there first, or create a new bot in @BotFather."
    )


class ChannelNotInPlan(PlanLimitReached):
    code = "channel_not_in_plan"
    message = N_("Your plan does not include Telegram. Upgrade your plan to connect it.")


class WebhookSecretMismatch(AppError):
    status_code = 403
    code = "forbidden"
    message = N_("You do not have access to this.")


class MalformedUpdate(AppError):
    status_code = 400
    code = "bad_request"
    message = N_("The request body is not valid JSON.")
