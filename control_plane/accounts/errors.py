"""Domain errors of the accounts feature; each carries its HTTP status and an English msgid."""

from __future__ import annotations

from bot_runtime.i18n import N_
from control_plane.kit.errors import AppError, Conflict, Forbidden


class InvalidEmailToken(AppError):
    """An emailed link that is unknown, used already, expired or replaced by a newer one: one answer for all."""

    status_code = 400
    code = "invalid_token"
    message = N_("This link is invalid or has expired. Please request a new one.")


class WrongCurrentPassword(AppError):
    status_code = 400
    code = "wrong_password"
    message = N_("The current password is not correct.")

    def __init__(self) -> None:
        super().__init__(fields=[("current_password", N_("The current password is not correct."))])


class AlreadyVerified(Conflict):
    code = "already_verified"
    message = N_("Your email address is already verified.")


class GoogleSignInRefused(Forbidden):
    code = "google_sign_in_refused"
    message = N_("We could not sign you in with Google. Please sign in with your email and password.")


class GoogleSignInFailed(AppError):
    status_code = 400
    code = "google_sign_in_failed"
    message = N_("Signing in with Google did not work. Please try again.")
