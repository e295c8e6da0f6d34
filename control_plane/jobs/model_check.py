"""Are the configured Gemini model ids still served? Checked once when a worker starts (GOOGLE_API_KEY set).

Google retires model ids over time, so GEMINI_FLASH_MODEL / GEMINI_PRO_MODEL are settings; this asks the API about
each one with a short timeout, logs ``answering.models.checked`` and keeps the result in Redis
(:func:`result_key`) for the admin console, which warns when an id is gone. It never stops the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

from redis.asyncio import Redis

from control_plane.settings import Settings, get_settings

log = logging.getLogger("control_plane.answering")

CHECK_WAIT_SECONDS = 5.0
RESULT_TTL_SECONDS = 7 * 24 * 3600


def result_key(settings: Settings | None = None) -> str:
    return f"{(settings or get_settings()).redis_key_prefix}answering:models"


async def check_models(settings: Settings, redis: Redis, *, wait: float = CHECK_WAIT_SECONDS) -> dict[str, Any] | None:
    """Check the configured ids and store ``{"checked_at", "models": {id: exists}, "missing": [ids]}``; None (and
    nothing stored) without a key."""
    if not settings.google_api_key:
        return None
    from bot_runtime.answering.providers.gemini import GeminiProvider
    from bot_runtime.answering.schemas import ModelTier

    provider = GeminiProvider(
        settings.google_api_key,
        models={ModelTier.FLASH: settings.gemini_flash_model, ModelTier.PRO: settings.gemini_pro_model},
        base_url=settings.gemini_api_base_url or None,
        timeout=wait,
        max_retries=0,
    )
    models = await provider.check_models(wait=wait)
    result = {"checked_at": time.time(), "models": models, "missing": [m for m, ok in models.items() if not ok]}
    log.info("answering.models.checked", extra={"models": models, "missing": result["missing"]})
    if result["missing"]:
        log.warning("answering.models.missing", extra={"missing": result["missing"]})
    await redis.set(result_key(settings), json.dumps(result), ex=RESULT_TTL_SECONDS)
    return result


async def read_result(redis: Redis) -> dict[str, Any] | None:
    """The last stored check, or None (never checked, no key, or expired)."""
    raw = await redis.get(result_key())
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _run(settings: Settings) -> None:
    async def main() -> None:
        redis = Redis.from_url(settings.redis_url)
        try:
            await asyncio.wait_for(check_models(settings, redis), timeout=3 * CHECK_WAIT_SECONDS)
        finally:
            await redis.aclose()

    try:
        asyncio.run(main())
    except Exception:  # a slow or unreachable API must never take the worker down
        log.warning("answering.models.check_failed", exc_info=True)


def start_in_background(settings: Settings | None = None) -> threading.Thread | None:
    """Run the check once in a daemon thread (the worker starts without waiting); None without GOOGLE_API_KEY."""
    settings = settings or get_settings()
    if not settings.google_api_key:
        return None
    thread = threading.Thread(target=_run, args=(settings,), name="model-check", daemon=True)
    thread.start()
    return thread
