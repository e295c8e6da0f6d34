"""Any OpenAI-compatible chat endpoint (Qwen through DashScope's compatible mode, a local server) via ``openai``.

The SDK is imported when a provider is constructed. Its own retries are off so that
:func:`~bot_runtime.answering.engine.with_retries` applies one policy to every provider: 429, 5xx, timeouts and
connection errors are retried with backoff (honouring Retry-After), anything else fails at once.
"""

from __future__ import annotations

from typing import Any

from bot_runtime.answering.engine import ProviderError, build_prompt, parse_reply, with_retries
from bot_runtime.answering.schemas import AnswerRequest, AnswerResult


def classify_error(exc: Exception) -> tuple[bool, float | None]:
    """(retryable, suggested delay) for an exception raised by the openai client."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
        delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        return exc.status_code == 429 or exc.status_code >= 500, delay
    return isinstance(exc, openai.APITimeoutError | openai.APIConnectionError), None


class OpenAICompatProvider:
    """Answers with a chat-completions model at ``base_url`` (e.g. DashScope compatible mode, model 'qwen-plus')."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        model: str,
        name: str = "openai_compat",
        timeout: float = 20.0,
        max_retries: int = 2,
        temperature: float = 0.2,
        max_tokens: int = 800,
        max_turns: int = 6,
    ) -> None:
        import openai

        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.name = name
        self.model = model
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_turns = max_turns

    async def answer(self, request: AnswerRequest) -> AnswerResult:
        """Ask the model; raises :class:`ProviderError` when it fails after retries."""
        prompt = build_prompt(request, max_turns=self.max_turns)
        messages: list[dict[str, str]] = [{"role": "system", "content": prompt.system}]
        messages += [{"role": m.role, "content": m.text} for m in prompt.messages]

        async def call() -> Any:
            return await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens
            )

        try:
            response = await with_retries(call, classify=classify_error, max_retries=self.max_retries)
        except Exception as exc:
            retryable, _ = classify_error(exc)
            status = getattr(exc, "status_code", None)
            raise ProviderError(f"{self.name}: {exc}", status=status, retryable=retryable) from exc
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        choice = response.choices[0] if response.choices else None
        if choice is None:
            raise ProviderError(f"{self.name}: empty response")
        if choice.finish_reason == "content_filter":
            return AnswerResult(
                text="",
                fallback=True,
                provider=self.name,
                model=self.model,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                blocked="provider_safety",
            )
        text, sources, fallback = parse_reply(choice.message.content or "", prompt)
        return AnswerResult(
            text=text,
            source_ids=sources,
            fallback=fallback,
            provider=self.name,
            model=self.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
