"""Errors of the website widget; each carries its HTTP status and a translated message (see kit.errors)."""

from __future__ import annotations

from bot_runtime.i18n import N_
from control_plane.kit.errors import AppError, Forbidden, RateLimited, ServiceUnavailable


class OriginRefused(Forbidden):
    """The page embedding the widget is not on the bot's allowed origins (and is not our own site)."""

    code = "origin_refused"
    message = N_(
        "This website is not allowed to show this chat. The bot's owner can add it under "
        "“Websites allowed to show the widget” on the bot page."
    )


class WidgetUnavailable(ServiceUnavailable):
    """The bot is switched off, or its workspace is suspended or its plan lapsed."""

    code = "widget_unavailable"
    message = N_("This chat is not available right now. Please try again later.")


class MessageTooLong(AppError):
    status_code = 422
    code = "validation_error"
    message = N_("The message is too long: at most %(limit)s characters.")


class SendingTooFast(RateLimited):
    code = "rate_limited"
    message = N_("You are sending messages too quickly. Please wait %(seconds)s seconds and try again.")
