"""Shared building blocks of the control plane: database, errors, i18n, security, Redis, templating."""
