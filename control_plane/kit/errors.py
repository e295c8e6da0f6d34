"""One error base class carrying its HTTP status, and the handlers that render every error in one translated shape.

API errors look like ``{"error": {"code", "message", "fields": [{"field", "message"}]}}``; HTML pages get the
403/404/500 templates instead.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot_runtime.i18n import N_, gettext

log = logging.getLogger("botfactory.errors")


class AppError(Exception):
    """Base of every domain error. ``message`` is an English msgid, translated when rendered."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = N_("The request could not be processed.")

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: list[tuple[str, str]] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        self.fields = fields or []
        self.params = params or {}
        self.headers = headers
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": gettext(self.message, **self.params),
                "fields": [{"field": name, "message": gettext(msg)} for name, msg in self.fields],
            }
        }


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"
    message = N_("Please sign in to continue.")


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = N_("You do not have access to this.")


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = N_("Not found.")


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = N_("This conflicts with something that already exists.")


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = N_("The request is too large.")


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"
    message = N_("Some fields are not valid.")


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    message = N_("Too many attempts. Please wait a little and try again.")


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"
    message = N_("This feature is not available right now.")


# Pydantic error types mapped to our own translated messages, so the API never leaks Pydantic's English.
VALIDATION_MESSAGES: dict[str, str] = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This value is too short."),
    "string_too_long": N_("This value is too long."),
    "too_short": N_("This list is too short."),
    "too_long": N_("This list is too long."),
    "string_type": N_("Enter text."),
    "string_pattern_mismatch": N_("This value has an invalid format."),
    "value_error": N_("This value is not valid."),
    "int_parsing": N_("Enter a whole number."),
    "int_type": N_("Enter a whole number."),
    "float_parsing": N_("Enter a number."),
    "bool_parsing": N_("Enter true or false."),
    "bool_type": N_("Enter true or false."),
    "greater_than": N_("This number is too small."),
    "greater_than_equal": N_("This number is too small."),
    "less_than": N_("This number is too large."),
    "less_than_equal": N_("This number is too large."),
    "literal_error": N_("Choose one of the allowed values."),
    "enum": N_("Choose one of the allowed values."),
    "url_parsing": N_("Enter a valid URL."),
    "url_scheme": N_("Enter a valid URL."),
    "url_type": N_("Enter a valid URL."),
    "uuid_parsing": N_("This identifier is not valid."),
    "uuid_type": N_("This identifier is not valid."),
    "json_invalid": N_("The request body is not valid JSON."),
    "model_attributes_type": N_("The request body must be a JSON object."),
    "dict_type": N_("The request body must be a JSON object."),
    "list_type": N_("Enter a list."),
    "extra_forbidden": N_("This field is not allowed."),
}
EMAIL_MESSAGE = N_("Enter a valid email address.")


def _field_message(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "value_error" and "email" in str(error.get("msg", "")).lower():
        return EMAIL_MESSAGE
    ctx = error.get("ctx") or {}
    custom = ctx.get("error")
    if kind == "value_error" and isinstance(custom, ValueError) and custom.args and isinstance(custom.args[0], str):
        # Our own validators raise ValueError(N_("...")) with an msgid.
        return custom.args[0]
    return VALIDATION_MESSAGES.get(kind, N_("This value is not valid."))


def validation_error(exc: RequestValidationError) -> ValidationFailed:
    fields: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        fields.append((".".join(loc) or "body", _field_message(error)))
    if any(err.get("type") in {"json_invalid", "model_attributes_type"} for err in exc.errors()):
        return ValidationFailed(N_("The request body is not valid JSON."), fields=fields)
    return ValidationFailed(fields=fields)


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/webhooks/", "/healthz", "/readyz", "/docs", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")


def install_error_handlers(app: FastAPI, render_error_page: Any) -> None:
    """Register handlers; ``render_error_page(request, status)`` draws the HTML variant."""

    async def app_error(request: Request, exc: AppError) -> Response:
        if wants_html(request) and exc.status_code in (403, 404):
            return await render_error_page(request, exc.status_code)
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    async def request_validation(request: Request, exc: RequestValidationError) -> Response:
        return await app_error(request, validation_error(exc))

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        mapped: AppError
        if exc.status_code == 404:
            mapped = NotFound()
        elif exc.status_code == 405:
            mapped = AppError(N_("This method is not allowed here."))
            mapped.status_code, mapped.code = 405, "method_not_allowed"
        elif exc.status_code == 413:
            mapped = PayloadTooLarge()
        elif exc.status_code == 401:
            mapped = NotAuthenticated()
        elif exc.status_code == 403:
            mapped = Forbidden()
        else:
            mapped = AppError()
            mapped.status_code = exc.status_code
        mapped.headers = getattr(exc, "headers", None)
        return await app_error(request, mapped)

    async def unhandled(request: Request, exc: Exception) -> Response:
        log.exception("request.failed", extra={"path": request.url.path})
        if wants_html(request):
            return await render_error_page(request, 500)
        body = {
            "error": {
                "code": "internal_error",
                "message": gettext(N_("Something went wrong on our side.")),
                "fields": [],
            }
        }
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(AppError, app_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unhandled)
