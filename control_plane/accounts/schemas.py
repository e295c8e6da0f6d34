"""Request and response bodies of the accounts API."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from bot_runtime.i18n import N_

Language = Literal["uz", "ru", "en"]


def check_password(value: str) -> str:
    if len(value) < 8:
        raise ValueError(N_("Use at least 8 characters for the password."))
    if len(value) > 256:
        raise ValueError(N_("This value is too long."))
    if value.strip() != value or not value.strip():
        raise ValueError(N_("The password cannot start or end with a space."))
    return value


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """IANA zone names offered in the profile form (tzdata ships them, so every platform has the same list)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def check_timezone(value: str) -> str:
    value = value.strip()
    if value not in time_zones():
        raise ValueError(N_("Choose a time zone from the list."))
    return value


def check_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(N_("This field is required."))
    return value


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320)
    password: str
    name: str = Field(min_length=1, max_length=200)
    language: Language = "en"

    _password = field_validator("password")(check_password)
    _name = field_validator("name")(check_name)


class LoginIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200)


class TokenIn(BaseModel):
    """A single-use token from an emailed link."""

    token: str = Field(min_length=10, max_length=200)


class PasswordResetIn(BaseModel):
    email: EmailStr = Field(max_length=320)


class PasswordResetConfirmIn(BaseModel):
    token: str = Field(min_length=10, max_length=200)
    password: str

    _password = field_validator("password")(check_password)


class ProfileUpdate(BaseModel):
    """Fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    language: Language | None = None
    timezone: str | None = Field(default=None, max_length=64)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class PasswordChangeIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str

    _new_password = field_validator("new_password")(check_password)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    plan: str
    status: str
    timezone: str
    trial_ends_at: datetime | None
    role: str | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    language: str
    timezone: str
    email_verified: bool
    is_platform_admin: bool
    created_at: datetime


class MeOut(UserOut):
    tenants: list[TenantOut] = []
