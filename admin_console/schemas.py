"""Request and response bodies of the admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field


class AdminLoginIn(BaseModel):
    """ADMIN_PASSWORD alone signs in the built-in admin; with ``email``, a platform admin user's own password."""

    password: str = Field(min_length=1, max_length=256)
    email: EmailStr | None = None


class AdminTokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class AdminTenantOut(BaseModel):
    id: uuid.UUID
    name: str
    plan: str
    status: str
    timezone: str
    trial_ends_at: datetime | None
    created_at: datetime
    owner_email: str | None
    members: int
    bots: int


class AdminTenantPage(BaseModel):
    items: list[AdminTenantOut]
    total: int
    limit: int
    offset: int


class AdminAbuseEntryOut(BaseModel):
    """One guardrail refusal (test console or a channel), with its tenant and bot names."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    bot_id: uuid.UUID
    bot_name: str
    channel: str
    chat_external_id: str | None
    direction: str
    reason: str
    matched: str | None
    text: str
    created_at: datetime


class AdminAbusePage(BaseModel):
    items: list[AdminAbuseEntryOut]
    total: int
    limit: int
    offset: int


class AdminTenantStatusOut(BaseModel):
    id: uuid.UUID
    status: str
