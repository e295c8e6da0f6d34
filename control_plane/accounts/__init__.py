"""Accounts: registration, email verification, sign-in (password, Google), sessions, password reset, profile."""
