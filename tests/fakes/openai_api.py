"""A fake OpenAI-compatible chat completions server (OpenAI, DashScope/Qwen compatible mode) for the ``openai`` client.

Serves ``POST {prefix}/chat/completions`` (plain and ``stream=true`` SSE), ``POST {prefix}/embeddings`` and
``GET {prefix}/models[/{id}]``, with ``Authorization: Bearer <key>`` checked against known keys. Usage::

    llm = FakeOpenAI(api_keys=["test-openai-key"])
    with llm.serve():
        client = AsyncOpenAI(api_key="test-openai-key", base_url=llm.base_url, max_retries=0)
        llm.enqueue(Fail(429, retry_after=2))
        ...
        llm.last_request("chat.completions").body["messages"]

Pass ``max_retries=0`` to the client unless the test is about its retries: the client retries 429 and 5xx twice by
default, and each retry consumes a queued behaviour.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.llm_script import (
    Behaviour,
    Block,
    Fail,
    Reply,
    Script,
    hashed_embedding,
    pause,
    split_words,
    token_count,
)
from tests.fakes.server import FakeServer

__all__ = ["DEFAULT_MODELS", "Block", "Fail", "FakeOpenAI", "OpenAIRequest", "Reply"]

DEFAULT_MODELS: tuple[str, ...] = ("qwen-plus", "qwen-turbo", "qwen-max", "gpt-4o-mini", "text-embedding-v4")
_EMBEDDING_DIMENSION = 1024
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, default message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class OpenAIRequest:
    """One request as received (before auth, so rejected calls are visible too)."""

    method: str
    path: str
    endpoint: str  # "chat.completions", "embeddings", "models.list", "models.retrieve"
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic()

    @property
    def prompt(self) -> str:
        """The text of the last user message (what an echo reply repeats)."""
        return _last_user_text(self.body) if isinstance(self.body, dict) else ""


class _OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        kind, default_code, default_message = _ERRORS.get(status, ("api_error", None, "Request failed."))
        super().__init__(message or default_message)
        self.status, self.type, self.param, self.headers = status, kind, param, headers or {}
        self.message = message or default_message
        self.code = code or default_code


class FakeOpenAI:
    """In-process fake of an OpenAI-compatible API. An ASGI app; behaviours and records are thread-safe."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = ("test-openai-key",),
        models: Iterable[str] = DEFAULT_MODELS,
        prefix: str = "/v1",
    ) -> None:
        """``prefix`` is the path the client's ``base_url`` ends with (DashScope uses ``/compatible-mode/v1``)."""
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._lock = threading.Lock()
        self._api_keys = set(api_keys)
        self._models = list(models)
        self._script = Script()
        self._embedding_script = Script()
        self._requests: list[OpenAIRequest] = []
        self._ids = itertools.count(1)
        self._server: FakeServer | None = None
        self._app = Starlette(
            routes=[
                Route(f"{self.prefix}/chat/completions", self._chat, methods=["POST"]),
                Route(f"{self.prefix}/embeddings", self._embeddings, methods=["POST"]),
                Route(f"{self.prefix}/models", self._list_models, methods=["GET"]),
                Route(f"{self.prefix}/models/{{model:path}}", self._get_model, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # ---- serving and programming -------------------------------------------------------------------------------

    def serve(self) -> FakeServer:
        """A :class:`FakeServer` for this fake; ``with llm.serve():`` starts it and sets :attr:`base_url`."""
        self._server = FakeServer(self)
        return self._server

    @property
    def base_url(self) -> str:
        """For ``OpenAI(base_url=...)``: the server URL plus :attr:`prefix`."""
        if self._server is None or not self._server.running:
            raise RuntimeError("call serve() and enter it first")
        return f"{self._server.base_url}{self.prefix}"

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self._api_keys.add(key)

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """The behaviour of every chat completion once the queue is empty (initially an echo)."""
        self._script.set_default(behaviour)

    def enqueue(self, *behaviours: Behaviour) -> None:
        """One-shot behaviours for the next chat completions, in order."""
        self._script.enqueue(*behaviours)

    def enqueue_embedding(self, *behaviours: Fail) -> None:
        """One-shot failures for the next embedding calls (embeddings otherwise always succeed)."""
        self._embedding_script.enqueue(*behaviours)

    def reset(self) -> None:
        """Back to echo replies, no queued behaviours, no recorded requests; API keys and models stay."""
        self._script.reset()
        self._embedding_script.reset()
        with self._lock:
            self._requests.clear()

    @property
    def requests(self) -> list[OpenAIRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, endpoint: str) -> list[OpenAIRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def last_request(self, endpoint: str | None = None) -> OpenAIRequest:
        found = self.requests_for(endpoint) if endpoint else self.requests
        if not found:
            raise AssertionError(f"no {endpoint or ''} request was received")
        return found[-1]

    # ---- HTTP --------------------------------------------------------------------------------------------------

    async def _record(self, request: Request, endpoint: str) -> OpenAIRequest:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = OpenAIRequest(
            method=request.method,
            path=request.url.path,
            endpoint=endpoint,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(record)
        return record

    def _authorize(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            known = scheme.lower() == "bearer" and key in self._api_keys
        if not known:
            shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            raise _OpenAIError(401, f"Incorrect API key provided: {shown}.")

    def _require_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _OpenAIError(
                400, "you must provide a model parameter", code="missing_required_parameter", param="model"
            )
        with self._lock:
            known = model in self._models
        if not known:
            raise _OpenAIError(404, f"The model `{model}` does not exist or you do not have access to it.")
        return model

    async def _chat(self, request: Request) -> Response:
        record = await self._record(request, "chat.completions")
        try:
            self._authorize(request)
            body = record.body
            if not isinstance(body, dict):
                raise _OpenAIError(400, "We could not parse the JSON body of your request.")
            model = self._require_model(body)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _OpenAIError(
                    400, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages"
                )
            behaviour = self._script.next()
            if not await pause(request, behaviour.delay):
                return Response(status_code=499)
            if isinstance(behaviour, Fail):
                raise _failure(behaviour)
            if isinstance(behaviour, Block) and behaviour.stage == "prompt":
                # DashScope's content moderation refuses the request outright.
                raise _OpenAIError(400, "Input data may contain inappropriate content.", code="data_inspection_failed")
        except _OpenAIError as exc:
            return _error_response(exc)

        completion_id = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        prompt_tokens = sum(token_count(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        if isinstance(behaviour, Block):
            text, finish = "", "content_filter"
        else:
            text, finish = _reply_text(behaviour, body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": token_count(text),
            "total_tokens": prompt_tokens + token_count(text),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                },
                headers={"x-request-id": completion_id},
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }

        words = split_words(text)
        size = max(1, -(-len(words) // 3))
        chunks = [chunk({"role": "assistant", "content": ""}, None)]
        chunks += [chunk({"content": "".join(words[i : i + size])}, None) for i in range(0, len(words), size)]
        chunks.append(chunk({}, finish))
        if include_usage:
            chunks.append({**chunk({}, None), "choices": [], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            for item in chunks:
                yield f"data: {json.dumps(item)}\n\n".encode()
                await asyncio.sleep(0)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": completion_id})

    async def _embeddings(self, request: Request) -> Response:
        record = await self._record(request, "embeddings")
        try:
            self._authorize(request)
            body = record.body
            if not isinstance(body, dict):
                raise _OpenAIError(400, "We could not parse the JSON body of your request.")
            model = self._require_model(body)
            behaviour = self._embedding_script.next()
            if not await pause(request, behaviour.delay):
                return Response(status_code=499)
            if isinstance(behaviour, Fail):
                raise _failure(behaviour)
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise _OpenAIError(400, "'input' must be a string or an array of strings", param="input")
            dimension = int(body.get("dimensions") or _EMBEDDING_DIMENSION)
        except _OpenAIError as exc:
            return _error_response(exc)
        tokens = sum(token_count(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": hashed_embedding(t, dimension)}
                    for i, t in enumerate(texts)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _list_models(self, request: Request) -> Response:
        await self._record(request, "models.list")
        try:
            self._authorize(request)
        except _OpenAIError as exc:
            return _error_response(exc)
        with self._lock:
            models = list(self._models)
        return JSONResponse({"object": "list", "data": [_model_resource(m) for m in models]})

    async def _get_model(self, request: Request) -> Response:
        await self._record(request, "models.retrieve")
        model = request.path_params["model"]
        try:
            self._authorize(request)
            with self._lock:
                known = model in self._models
            if not known:
                raise _OpenAIError(404, f"The model '{model}' does not exist")
        except _OpenAIError as exc:
            return _error_response(exc)
        return JSONResponse(_model_resource(model))


# ---- wire format helpers ---------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Message content is a string or a list of parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _reply_text(behaviour: Reply, body: dict[str, Any]) -> tuple[str, str]:
    text = behaviour.text if behaviour.text is not None else f"echo: {_last_user_text(body)}"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    words = split_words(text)
    if isinstance(limit, int) and len(words) > limit:
        return "".join(words[:limit]), "length"
    return text, "stop"


def _model_resource(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}


def _failure(fail: Fail) -> _OpenAIError:
    headers = {}
    if fail.retry_after is not None:
        # The openai client honours retry-after-ms first, then retry-after.
        headers = {"retry-after": f"{fail.retry_after:g}", "retry-after-ms": f"{int(fail.retry_after * 1000)}"}
    return _OpenAIError(fail.status, fail.message, headers=headers)


def _error_response(exc: _OpenAIError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)
