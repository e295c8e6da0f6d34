"""Accounts HTML pages: register, login, logout, password reset, email verification, profile, dev outbox."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
