"""Gemini through google-genai: answers (Flash or Pro by plan tier) and gemini-embedding-001 embeddings.

The SDK (~60 MiB resident) is imported when a provider is constructed, not when this module is. Model ids are
arguments with current defaults because Google retires ids; :meth:`GeminiProvider.check_models` verifies them.
The SDK's own retries are off: :func:`~bot_runtime.answering.engine.with_retries` retries 429 / 5xx / timeouts
with backoff, honouring the server's RetryInfo delay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot_runtime.answering.engine import ProviderError, build_prompt, parse_reply, with_retries
from bot_runtime.answering.schemas import AnswerRequest, AnswerResult, ModelTier

DEFAULT_MODELS: dict[ModelTier, str] = {ModelTier.FLASH: "gemini-3.5-flash", ModelTier.PRO: "gemini-3.1-pro-preview"}
DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
_BLOCKED_FINISH = {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MODEL_ARMOR", "RECITATION"}
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def _http_options(types: Any, base_url: str | None, api_version: str | None, timeout: float) -> Any:
    options: dict[str, Any] = {"timeout": int(timeout * 1000)}
    if base_url:
        options["base_url"] = base_url
    if api_version:
        options["api_version"] = api_version
    return types.HttpOptions(**options)


def classify_error(exc: Exception) -> tuple[bool, float | None]:
    """(retryable, suggested delay) for an exception raised by google-genai."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return exc.code in _RETRYABLE_STATUS, _retry_delay(exc.details)
    # Transport failures (timeouts, refused connections) come from httpx / httpx2 and are worth another try.
    name = type(exc).__name__
    return ("Timeout" in name or "Connect" in name or "Network" in name or "Protocol" in name), None


def _retry_delay(details: Any) -> float | None:
    """The RetryInfo delay ("47s") of a Gemini error body, in seconds."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and (match := re.fullmatch(r"([\d.]+)s", delay)):
            return float(match.group(1))
    return None


class GeminiProvider:
    """Answers with Gemini. ``models`` maps the plan tier to a model id."""

    name = "gemini"

    def __init__(
        self,
        api_key: str,
        *,
        models: Mapping[ModelTier, str] | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float = 20.0,
        max_retries: int = 2,
        temperature: float = 0.2,
        max_output_tokens: int = 800,
        max_turns: int = 6,
    ) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        self._client = genai.Client(api_key=api_key, http_options=_http_options(types, base_url, api_version, timeout))
        self.models = {**DEFAULT_MODELS, **(models or {})}
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.max_turns = max_turns

    async def answer(self, request: AnswerRequest) -> AnswerResult:
        """Ask Gemini; raises :class:`ProviderError` when it fails after retries."""
        types = self._types
        prompt = build_prompt(request, max_turns=self.max_turns)
        model = self.models[request.bot.model_tier]
        contents = [
            types.Content(role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.text)])
            for m in prompt.messages
        ]
        config = types.GenerateContentConfig(
            system_instruction=prompt.system,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
        )

        async def call() -> Any:
            return await self._client.aio.models.generate_content(model=model, contents=contents, config=config)

        try:
            response = await with_retries(call, classify=classify_error, max_retries=self.max_retries)
        except Exception as exc:
            retryable, _ = classify_error(exc)
            raise ProviderError(f"gemini: {exc}", status=getattr(exc, "code", None), retryable=retryable) from exc
        usage = response.usage_metadata
        tokens_in = (usage.prompt_token_count or 0) if usage else 0
        tokens_out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        blocked = _safety_block(response)
        if blocked:
            return AnswerResult(
                text="",
                fallback=True,
                provider=self.name,
                model=model,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                blocked=blocked,
            )
        text, sources, fallback = parse_reply(response.text or "", prompt)
        return AnswerResult(
            text=text,
            source_ids=sources,
            fallback=fallback,
            provider=self.name,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )

    async def check_models(self, *, wait: float = 5.0) -> dict[str, bool]:
        """Whether each configured model id still exists (run in the background when a key is set)."""
        import asyncio

        result: dict[str, bool] = {}
        for model in dict.fromkeys(self.models.values()):
            try:
                await asyncio.wait_for(self._client.aio.models.get(model=model), timeout=wait)
                result[model] = True
            except Exception:  # a retired model, a bad key or a timeout all mean "not usable"
                result[model] = False
        return result


def _safety_block(response: Any) -> str | None:
    """'provider_safety' when Gemini refused the prompt or stopped the answer for safety reasons."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and getattr(feedback, "block_reason", None):
        return "provider_safety"
    for candidate in response.candidates or []:
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
        if reason in _BLOCKED_FINISH:
            return "provider_safety"
    return None


class GeminiEmbedder:
    """:class:`~bot_runtime.answering.index.Embedder` on gemini-embedding-001 (used at ingestion and per query)."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        dimension: int = 768,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        self._client = genai.Client(api_key=api_key, http_options=_http_options(types, base_url, api_version, timeout))
        self.model = model
        self.dimension = dimension

    def embed(self, texts: Sequence[str], task: str) -> list[list[float]]:
        """One vector per text; ``task`` is 'document' or 'query' (mapped to Gemini's task types)."""
        task_type = "RETRIEVAL_QUERY" if task == "query" else "RETRIEVAL_DOCUMENT"
        response = self._client.models.embed_content(
            model=self.model,
            contents=list(texts),
            config=self._types.EmbedContentConfig(task_type=task_type, output_dimensionality=self.dimension),
        )
        return [list(e.values or []) for e in response.embeddings or []]
