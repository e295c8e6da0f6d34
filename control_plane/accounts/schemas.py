"""Request and response bodies of the accounts API."""

from __future__ import annotations

import uuid
from datetime import datetime
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


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320)
    password: str
    name: str = Field(min_length=1, max_length=200)
    language: Language = "en"

    _password = field_validator("password")(check_password)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(N_("This field is required."))
        return value


class LoginIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200)


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
