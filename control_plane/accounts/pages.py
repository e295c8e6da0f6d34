"""Accounts HTML pages: register, login (password and Google), logout, password reset, email verification,
profile, and the development outbox.

Forms post back to their own page, form-encoded, with the CSRF token; failures re-render the form with messages
beside the fields. The rules live in ``service``; these handlers only translate between forms and services.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.i18n import LOCALES, N_, current_locale
from bot_runtime.i18n import gettext as _
from control_plane.accounts import google, repository, service
from control_plane.accounts.auth import OptionalPrincipal, Principal, check_csrf
from control_plane.accounts.errors import AlreadyVerified, GoogleSignInFailed, GoogleSignInRefused
from control_plane.accounts.schemas import (
    LoginIn,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    ProfileUpdate,
    RegisterIn,
    time_zones,
)
from control_plane.kit import security
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, NotFound, validation_error
from control_plane.kit.i18n import LANGUAGE_NAMES
from control_plane.kit.pages import Lang, client_ip, set_csrf_cookie, set_language_cookie
from control_plane.kit.templating import env, render
from control_plane.models import User
from control_plane.settings import get_settings

router = APIRouter(include_in_schema=False)

ModelT = TypeVar("ModelT", bound=BaseModel)
OUTBOX_LIMIT = 50

# Messages shown after a redirect, named in the query string (?notice=...) so no text travels in URLs.
NOTICES: dict[str, tuple[str, str]] = {
    "password-reset": ("success", N_("Your password has been changed. Please sign in with the new password.")),
    "profile-saved": ("success", N_("Your profile has been saved.")),
    "password-changed": ("success", N_("Your password has been changed. Your other sessions were signed out.")),
    "signed-out": ("info", N_("You have signed out.")),
    GoogleSignInFailed.code: ("error", GoogleSignInFailed.message),
    GoogleSignInRefused.code: ("error", GoogleSignInRefused.message),
}


@dataclass(frozen=True, slots=True)
class Flash:
    kind: str  # success | error | info
    message: str


# Helpers ------------------------------------------------------------------------------------------------------


def safe_next(value: str | None) -> str | None:
    """A same-site path to return to, or None: never another host (``//evil``, ``/\\evil``, ``https://...``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return None
    if any(ord(char) < 32 for char in value):
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def show_notice(request: Request) -> None:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    if notice is not None:
        request.state.flash = Flash(kind=notice[0], message=_(notice[1]))


async def read_form(request: Request) -> dict[str, str]:
    """Text fields of a form-encoded body (the CSRF token and file parts left out)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}


def validate_form(model: type[ModelT], data: dict[str, Any]) -> tuple[ModelT | None, dict[str, str]]:
    """Validate form fields with the API schema; errors come back translated, by field, as the API words them."""
    names = set(model.model_fields)
    try:
        return model.model_validate({key: value for key, value in data.items() if key in names}), {}
    except ValidationError as exc:
        failed = validation_error(RequestValidationError(exc.errors()))
        errors: dict[str, str] = {}
        for field, message in failed.fields:
            errors.setdefault(field, _(message))
        return None, errors


def error_context(exc: AppError) -> dict[str, Any]:
    return {
        "error": _(exc.message, **exc.params),
        "errors": {field: _(message) for field, message in exc.fields},
    }


def form_page(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200, exc: AppError | None = None
) -> HTMLResponse:
    """Render a form page; with ``exc``, show the domain error and answer with its status (and headers)."""
    if exc is not None:
        context = {**context, **error_context(exc)}
        status_code = exc.status_code
    response = render(request, template, context, status_code=status_code)
    if exc is not None and exc.headers:
        response.headers.update(exc.headers)
    return response


def login_redirect(request: Request, lang: str) -> RedirectResponse:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/{lang}/login?{urlencode({'next': path})}", status_code=303)


def set_session_cookie(response: Response, secret: str) -> None:
    settings = get_settings()
    response.set_cookie(
        settings.session_cookie_name,
        secret,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.https,
    )


def clear_session_cookie(response: Response) -> None:
    settings = get_settings()
    response.delete_cookie(settings.session_cookie_name, path="/", httponly=True, samesite="lax", secure=settings.https)


async def sign_in_browser(request: Request, db: AsyncSession, user: User, *, next_path: str | None) -> RedirectResponse:
    """Start a browser session for ``user`` and send them on: to ``next`` when same-site, else their dashboard."""
    settings = get_settings()
    old = request.cookies.get(settings.session_cookie_name)
    if old:
        # One browser, one session: whatever session this browser held before ends here.
        await service.revoke_token(db, old, "browser")
    secret = await service.start_browser_session(
        db, user, user_agent=request.headers.get("user-agent", ""), ip=client_ip(request)
    )
    response = RedirectResponse(safe_next(next_path) or f"/{user.language}/dashboard", status_code=303)
    set_session_cookie(response, secret)
    set_language_cookie(response, user.language)
    # A fresh CSRF seed at sign-in: a seed planted in this browser before sign-in is worthless afterwards.
    set_csrf_cookie(response, security.new_token(24))
    return response


async def undo(request: Request, db: AsyncSession) -> None:
    """Roll back what a failed action wrote, then reload the signed-in user the re-rendered page still shows
    (a rollback expires every loaded row, and async code cannot lazy-load)."""
    await db.rollback()
    user = getattr(request.state, "user", None)
    if user is not None:
        await db.refresh(user)


def signed_in_user(principal: Principal | None) -> User | None:
    return principal.user if principal is not None else None


# Register -----------------------------------------------------------------------------------------------------


def _register_page(
    request: Request, *, status_code: int = 200, exc: AppError | None = None, **context: Any
) -> HTMLResponse:
    base = {"values": {}, "errors": {}, "google_enabled": get_settings().google_oauth_enabled}
    return form_page(request, "accounts/register.html", {**base, **context}, status_code=status_code, exc=exc)


@router.get("/{lang}/register")
async def register_page(request: Request, lang: Lang, principal: OptionalPrincipal) -> Response:
    if signed_in_user(principal) is not None:
        return RedirectResponse(f"/{lang}/dashboard", status_code=303)
    return _register_page(request, values={"language": lang})


@router.post("/{lang}/register")
async def register_submit(request: Request, lang: Lang, db: SessionDep) -> Response:
    await check_csrf(request)
    data = await read_form(request)
    values = {key: data.get(key, "") for key in ("email", "name", "language")}
    body, errors = validate_form(RegisterIn, data)
    if body is None:
        return _register_page(request, values=values, errors=errors, status_code=422)
    try:
        user = await service.sign_up(
            db, email=body.email, password=body.password, name=body.name, language=body.language, ip=client_ip(request)
        )
    except AppError as exc:
        await undo(request, db)
        return _register_page(request, values=values, exc=exc)
    return await sign_in_browser(request, db, user, next_path=None)


# Login and logout ---------------------------------------------------------------------------------------------


def _login_page(
    request: Request, *, status_code: int = 200, exc: AppError | None = None, **context: Any
) -> HTMLResponse:
    base = {
        "values": {},
        "errors": {},
        "next": safe_next(request.query_params.get("next")) or "",
        "google_enabled": get_settings().google_oauth_enabled,
    }
    return form_page(request, "accounts/login.html", {**base, **context}, status_code=status_code, exc=exc)


@router.get("/{lang}/login")
async def login_page(request: Request, lang: Lang, principal: OptionalPrincipal) -> Response:
    user = signed_in_user(principal)
    if user is not None:
        target = safe_next(request.query_params.get("next")) or f"/{lang}/dashboard"
        return RedirectResponse(target, status_code=303)
    show_notice(request)
    return _login_page(request)


@router.post("/{lang}/login")
async def login_submit(request: Request, lang: Lang, db: SessionDep) -> Response:
    await check_csrf(request)
    data = await read_form(request)
    next_path = safe_next(data.get("next"))
    values = {"email": data.get("email", "")}
    body, errors = validate_form(LoginIn, data)
    if body is None:
        return _login_page(request, values=values, errors=errors, next=next_path or "", status_code=422)
    try:
        user = await service.authenticate(db, email=body.email, password=body.password, ip=client_ip(request))
    except AppError as exc:
        await undo(request, db)
        return _login_page(request, values=values, next=next_path or "", exc=exc)
    return await sign_in_browser(request, db, user, next_path=next_path)


@router.post("/{lang}/logout")
async def logout_submit(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    await check_csrf(request)
    if principal is not None and principal.session_id is not None:
        await service.end_session(db, principal.session_id)
    response = RedirectResponse(f"/{lang}/login?notice=signed-out", status_code=303)
    clear_session_cookie(response)
    return response


# Sign in with Google ------------------------------------------------------------------------------------------


def google_failed(lang: str, exc: AppError) -> RedirectResponse:
    """Back to the sign-in page with the reason: the callback URL has no language and no form to show."""
    notice = exc.code if exc.code in NOTICES else GoogleSignInFailed.code
    return RedirectResponse(f"/{lang}/login?notice={notice}", status_code=303)


@router.get("/{lang}/login/google")
async def google_login(request: Request, lang: Lang) -> Response:
    google_client = google.client()
    if google_client is None:
        raise NotFound()
    try:
        return await google.begin(
            request, google_client, lang=lang, next_path=safe_next(request.query_params.get("next"))
        )
    except AppError as exc:
        return google_failed(lang, exc)


@router.get(google.CALLBACK_PATH)
async def google_callback(request: Request, db: SessionDep) -> Response:
    google_client = google.client()
    if google_client is None:
        raise NotFound()
    back = google.pending_return(request, default_lang=current_locale.get())
    lang = back.lang if back.lang in LOCALES else current_locale.get()
    try:
        identity = await google.complete(request, google_client)
        user = await service.google_sign_in(
            db,
            sub=identity.sub,
            email=identity.email,
            email_verified=identity.email_verified,
            name=identity.name,
            language=lang,
        )
    except AppError as exc:
        await undo(request, db)
        response: Response = google_failed(lang, exc)
    else:
        response = await sign_in_browser(request, db, user, next_path=back.next_path)
    google.forget_state(response)
    return response


# Password reset -----------------------------------------------------------------------------------------------


def _reset_page(
    request: Request, *, status_code: int = 200, exc: AppError | None = None, **context: Any
) -> HTMLResponse:
    base = {"values": {}, "errors": {}, "token": "", "sent": False}
    return form_page(request, "accounts/password_reset.html", {**base, **context}, status_code=status_code, exc=exc)


@router.get("/{lang}/password-reset")
async def password_reset_page(request: Request, lang: Lang) -> Response:
    """Without a token: ask for the email address. With ``?token=`` from the mail: choose a new password."""
    return _reset_page(request, token=request.query_params.get("token", "")[:200])


@router.post("/{lang}/password-reset")
async def password_reset_submit(request: Request, lang: Lang, db: SessionDep) -> Response:
    await check_csrf(request)
    data = await read_form(request)
    if data.get("token"):
        token = data["token"][:200]
        confirm, errors = validate_form(PasswordResetConfirmIn, data)
        if confirm is None:
            return _reset_page(request, token=token, errors=errors, status_code=422)
        try:
            await service.reset_password(db, token=confirm.token, password=confirm.password)
        except AppError as exc:
            await undo(request, db)
            return _reset_page(request, token=token, exc=exc)
        response = RedirectResponse(f"/{lang}/login?notice=password-reset", status_code=303)
        clear_session_cookie(response)
        return response
    values = {"email": data.get("email", "")}
    body, errors = validate_form(PasswordResetIn, data)
    if body is None:
        return _reset_page(request, values=values, errors=errors, status_code=422)
    try:
        await service.request_password_reset(db, email=body.email, ip=client_ip(request))
    except AppError as exc:
        await undo(request, db)
        return _reset_page(request, values=values, exc=exc)
    return _reset_page(request, values=values, sent=True)


# Email verification -------------------------------------------------------------------------------------------


@router.get("/{lang}/verify-email")
async def verify_email_page(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    """With ``?token=`` from the mail: verify. Without: say where the link is and offer to send a new one."""
    token = request.query_params.get("token", "")[:200]
    user = signed_in_user(principal)
    if not token:
        return render(request, "accounts/verify_email.html", {"state": "pending"})
    try:
        await service.verify_email(db, token)
    except AppError as exc:
        await undo(request, db)
        if user is not None and user.email_verified_at is not None:
            # A second click on a link that already worked.
            return render(request, "accounts/verify_email.html", {"state": "verified"})
        return form_page(request, "accounts/verify_email.html", {"state": "failed"}, exc=exc)
    return render(request, "accounts/verify_email.html", {"state": "verified"})


@router.post("/{lang}/verify-email")
async def verify_email_resend(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    """The banner's "send the link again" button."""
    await check_csrf(request)
    user = signed_in_user(principal)
    if user is None:
        return login_redirect(request, lang)
    try:
        await service.resend_verification(db, user)
    except AlreadyVerified:
        return render(request, "accounts/verify_email.html", {"state": "verified"})
    except AppError as exc:
        await undo(request, db)
        return form_page(request, "accounts/verify_email.html", {"state": "pending"}, exc=exc)
    return render(request, "accounts/verify_email.html", {"state": "sent"})


# Profile ------------------------------------------------------------------------------------------------------


def _profile_page(
    request: Request, user: User, *, status_code: int = 200, exc: AppError | None = None, **context: Any
) -> HTMLResponse:
    base = {
        "values": {"name": user.name, "language": user.language, "timezone": user.timezone},
        "errors": {},
        "form": "",
        "time_zones": [(zone, zone) for zone in time_zones()],
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LOCALES],
        "has_password": user.password_hash is not None,
    }
    return form_page(request, "accounts/profile.html", {**base, **context}, status_code=status_code, exc=exc)


@router.get("/{lang}/profile")
async def profile_page(request: Request, lang: Lang, principal: OptionalPrincipal) -> Response:
    user = signed_in_user(principal)
    if user is None:
        return login_redirect(request, lang)
    show_notice(request)
    return _profile_page(request, user)


@router.post("/{lang}/profile")
async def profile_submit(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    """Two forms share the page: ``form=profile`` (name, language, time zone) and ``form=password``."""
    await check_csrf(request)
    user = signed_in_user(principal)
    if user is None or principal is None:
        return login_redirect(request, lang)
    data = await read_form(request)
    if data.get("form") == "password":
        change, errors = validate_form(PasswordChangeIn, data)
        if change is None:
            return _profile_page(request, user, form="password", errors=errors, status_code=422)
        try:
            await service.change_password(
                db,
                user,
                current_password=change.current_password,
                new_password=change.new_password,
                keep_session=principal.session_id,
                ip=client_ip(request),
            )
        except AppError as exc:
            await undo(request, db)
            return _profile_page(request, user, form="password", exc=exc)
        return RedirectResponse(f"/{lang}/profile?notice=password-changed", status_code=303)
    values = {key: data.get(key, "") for key in ("name", "language", "timezone")}
    update, errors = validate_form(ProfileUpdate, values)
    if update is None:
        return _profile_page(request, user, form="profile", values=values, errors=errors, status_code=422)
    await service.update_profile(db, user, name=update.name, language=update.language, timezone=update.timezone)
    response = RedirectResponse(f"/{user.language}/profile?notice=profile-saved", status_code=303)
    set_language_cookie(response, user.language)
    return response


# Development outbox -------------------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>\"']+")


def linkify(text: str) -> Markup:
    """Escape mail text and make its links clickable (development only; the text is never trusted as HTML)."""
    escaped = str(escape(text))
    return Markup(_URL.sub(lambda match: f'<a href="{match.group(0)}">{match.group(0)}</a>', escaped))


env.filters.setdefault("linkify", linkify)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@router.get("/{lang}/dev/outbox")
async def dev_outbox(request: Request, lang: Lang, db: SessionDep, principal: OptionalPrincipal) -> Response:
    """Mail kept in the database when no SMTP server is configured; absent in production.

    Reset links sit in these mails, so outside production the page still answers only a browser on this machine
    (the ``make run`` newcomer) or a platform admin: a staging server left on "development" leaks nothing.
    """
    if get_settings().is_production:
        raise NotFound()
    is_admin = bool(principal and principal.is_platform_admin)
    if not (is_admin or _is_loopback(client_ip(request))):
        raise NotFound()
    mails = await repository.recent_outbox(db, limit=OUTBOX_LIMIT)
    return render(request, "accounts/outbox.html", {"mails": mails})
