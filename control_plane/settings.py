"""One pydantic-settings class with every setting, secret, limit, timeout and external base URL BotFactory uses."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development", "test", "your-secret-key"}


def to_asyncpg_url(url: str) -> str:
    """Convert Render's ``postgres://`` / ``postgresql://`` URLs (with ``sslmode``) into SQLAlchemy asyncpg form."""
    if not url:
        return url
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        scheme = "postgresql+asyncpg"
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        # asyncpg spells libpq's sslmode as ssl and rejects the libpq name.
        query.append(("ssl", value) if key == "sslmode" else (key, value))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class Settings(BaseSettings):
    """Read from the environment and ``.env``; names match what operators already use."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = ""
    redis_url: str = ""
    domain_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"

    # Secrets. ENCRYPTION_KEY is a comma-separated list of Fernet keys (newest first) so keys rotate without
    # touching JWT_SECRET_KEY; RUNTIME_SECRET_KEY encrypts credentials inside the Redis config documents.
    jwt_secret_key: str = ""
    encryption_key: str = ""
    runtime_secret_key: str = ""
    admin_password: str = ""

    # External services: keys and base URLs (every base URL can point at a fake or self-hosted server).
    google_api_key: str = ""
    gemini_api_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_flash_model: str = "gemini-3.5-flash"  # the 2.5 ids are deprecated (see protocols)
    gemini_pro_model: str = "gemini-3.1-pro-preview"  # the brief names 2.5 Pro; Google retired it
    gemini_embedding_model: str = "gemini-embedding-001"
    openai_compat_api_key: str = ""
    openai_compat_base_url: str = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    openai_compat_model: str = "qwen-plus"
    telegram_bot_token: str = ""
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_mode: Literal["auto", "webhook", "polling"] = "auto"
    whatsapp_token: str = ""
    instagram_token: str = ""
    graph_api_base_url: str = "https://graph.facebook.com"
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    payme_key: str = ""
    payme_merchant_id: str = ""
    payoneer_key: str = ""
    payoneer_api_base_url: str = "https://api.payoneer.com"

    # Email.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "BotFactory <no-reply@botfactory.local>"
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = 10.0

    # Sign in with Google (OpenID Connect through authlib).
    google_oauth_client_id: str = ""
    google_oauth_client_secret: str = ""
    google_oauth_metadata_url: str = "https://accounts.google.com/.well-known/openid-configuration"
    oauth_state_ttl_seconds: int = 600

    # Sessions and tokens.
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    session_ttl_seconds: int = 14 * 24 * 3600
    email_verification_ttl_seconds: int = 3 * 24 * 3600
    password_reset_ttl_seconds: int = 3600
    session_cookie_name: str = "bf_session"
    csrf_cookie_name: str = "bf_csrf"
    language_cookie_name: str = "bf_lang"

    # Rate limits (count per window).
    login_fail_limit_per_account: int = 10
    login_fail_limit_per_ip: int = 30
    login_fail_window_seconds: int = 15 * 60
    register_limit_per_ip: int = 20
    register_window_seconds: int = 3600
    password_reset_limit_per_ip: int = 10
    password_reset_limit_per_email: int = 5
    password_reset_window_seconds: int = 3600
    verification_resend_limit_per_user: int = 5
    verification_resend_window_seconds: int = 3600
    console_ask_limit_per_minute: int = 120
    widget_limit_per_visitor_per_minute: int = 20

    # Input limits.
    max_request_body_bytes: int = 25 * 1024 * 1024
    max_json_body_bytes: int = 2 * 1024 * 1024
    max_avatar_bytes: int = 2 * 1024 * 1024
    avatar_size_px: int = 256
    max_upload_bytes: int = 20 * 1024 * 1024
    max_message_chars: int = 4000

    # Database and Redis tuning.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_seconds: float = 10.0
    db_statement_timeout_ms: int = 30_000
    redis_socket_timeout_seconds: float = 5.0
    redis_key_prefix: str = "bf:"
    http_timeout_seconds: float = 15.0
    job_timeout_seconds: int = 15 * 60

    # Plans (the billing issue turns these into plan data; the trial length lives here).
    trial_days: int = 14

    # Runtimes.
    runtime_lease_ttl_seconds: int = Field(default=15, alias="RUNTIME_LEASE_TTL")
    runtime_idle_seconds: int = 15 * 60

    # Development conveniences.
    allow_loopback_urls: bool = False
    embedded_valkey_port: int = 6390

    @field_validator("database_url", mode="after")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        return to_asyncpg_url(value)

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        missing = [
            name
            for name in ("jwt_secret_key", "encryption_key", "runtime_secret_key", "database_url", "redis_url")
            if getattr(self, name).strip().lower() in PLACEHOLDER_SECRETS
        ]
        if self.admin_password and self.admin_password.lower() in PLACEHOLDER_SECRETS:
            missing.append("admin_password")
        if missing:
            raise ValueError("production refuses missing or placeholder settings: " + ", ".join(missing).upper())
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def https(self) -> bool:
        return self.domain_url.startswith("https://")

    @property
    def encryption_keys(self) -> list[str]:
        return [key.strip() for key in self.encryption_key.split(",") if key.strip()]

    @property
    def google_oauth_enabled(self) -> bool:
        return bool(self.google_oauth_client_id and self.google_oauth_client_secret)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
