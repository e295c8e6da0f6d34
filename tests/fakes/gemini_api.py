"""A fake Gemini API (generativelanguage) for the real ``google-genai`` client, faithful to the REST protocol.

google-genai 3.x defaults to API version ``v1`` (older clients and docs use ``v1beta``), so every route takes the
version from the path: ``/{version}/models/{model}:{action}`` for generateContent, streamGenerateContent (``alt=sse``),
countTokens, embedContent and batchEmbedContents, plus ``GET /{version}/models[/{model}]``. Requests need a known
``x-goog-api-key`` (or ``?key=``). Usage::

    gemini = FakeGemini(api_keys=["test-gemini-key"])
    with gemini.serve():
        client = genai.Client(api_key="test-gemini-key", http_options=types.HttpOptions(base_url=gemini.base_url))
        gemini.enqueue(Fail(429, retry_after=20))    # next call: RESOURCE_EXHAUSTED
        gemini.set_behaviour(Reply("Hello!"))        # then every call answers "Hello!"
        ...
        gemini.last_request("generateContent").body["systemInstruction"]

Token counts are word counts; embeddings are hashed bags of words (see :func:`hashed_embedding`).
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

__all__ = ["DEFAULT_MODELS", "Block", "Fail", "FakeGemini", "GeminiRequest", "Reply"]

_GENERATE = ["generateContent", "countTokens"]
_EMBED = ["embedContent"]
DEFAULT_MODELS: dict[str, list[str]] = {
    "gemini-3.5-flash": _GENERATE,
    "gemini-3.5-flash-lite": _GENERATE,
    "gemini-3.1-pro-preview": _GENERATE,
    "gemini-2.5-flash": _GENERATE,
    "gemini-2.5-flash-lite": _GENERATE,
    "gemini-2.5-pro": _GENERATE,
    "gemini-embedding-001": _EMBED,
}
_EMBEDDING_DIMENSION = 3072  # gemini-embedding-001's default when outputDimensionality is absent
_VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)


@dataclass(frozen=True)
class GeminiRequest:
    """One request as the fake received it (before auth and model checks, so rejected calls are visible too)."""

    method: str
    path: str
    version: str
    model: str | None
    action: str | None
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    at: float  # time.monotonic()

    @property
    def prompt(self) -> str:
        """The text of the last user turn (what an echo reply repeats)."""
        return _last_user_text(self.body) if isinstance(self.body, dict) else ""


class _GeminiError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


class FakeGemini:
    """In-process fake of the Gemini API. An ASGI app; behaviours and records are thread-safe."""

    def __init__(
        self, *, api_keys: Iterable[str] = ("test-gemini-key",), models: dict[str, list[str]] | None = None
    ) -> None:
        """``models`` maps a model id to its supportedGenerationMethods (default :data:`DEFAULT_MODELS`)."""
        self._lock = threading.Lock()
        self._api_keys = set(api_keys)
        self._models = dict(models if models is not None else DEFAULT_MODELS)
        self._script = Script()
        self._embedding_script = Script()
        self._requests: list[GeminiRequest] = []
        self._ids = itertools.count(1)
        self._server: FakeServer | None = None
        self._app = Starlette(
            routes=[
                Route("/{version}/models", self._list_models, methods=["GET"]),
                Route("/{version}/models/{name:path}", self._model_route, methods=["GET", "POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # ---- serving and programming -------------------------------------------------------------------------------

    def serve(self) -> FakeServer:
        """A :class:`FakeServer` for this fake; ``with gemini.serve():`` starts it and sets :attr:`base_url`."""
        self._server = FakeServer(self)
        return self._server

    @property
    def base_url(self) -> str:
        """For ``types.HttpOptions(base_url=...)``."""
        if self._server is None or not self._server.running:
            raise RuntimeError("call serve() and enter it first")
        return self._server.base_url

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self._api_keys.add(key)

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """The behaviour of every generate/stream call once the queue is empty (initially an echo)."""
        self._script.set_default(behaviour)

    def enqueue(self, *behaviours: Behaviour) -> None:
        """One-shot behaviours for the next generate/stream calls, in order."""
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
    def requests(self) -> list[GeminiRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, action: str) -> list[GeminiRequest]:
        """Recorded requests for one action (``generateContent``, ``batchEmbedContents``, ``get``, ``list``...)."""
        return [r for r in self.requests if r.action == action]

    def last_request(self, action: str | None = None) -> GeminiRequest:
        found = self.requests_for(action) if action else self.requests
        if not found:
            raise AssertionError(f"no {action or ''} request was received")
        return found[-1]

    # ---- HTTP --------------------------------------------------------------------------------------------------

    async def _record(self, request: Request, model: str | None, action: str | None) -> GeminiRequest:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = GeminiRequest(
            method=request.method,
            path=request.url.path,
            version=request.path_params["version"],
            model=model,
            action=action,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(record)
        return record

    def _authorize(self, request: Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            raise _GeminiError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        with self._lock:
            known = key in self._api_keys
        if not known:
            raise _GeminiError(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )

    async def _list_models(self, request: Request) -> Response:
        record = await self._record(request, None, "list")
        try:
            self._check_version(record.version)
            self._authorize(request)
        except _GeminiError as exc:
            return _error_response(exc)
        with self._lock:
            names = sorted(self._models)
        page_size = int(request.query_params.get("pageSize", "50"))
        start = int(request.query_params.get("pageToken") or 0)
        page = names[start : start + page_size]
        body: dict[str, Any] = {"models": [self._model_resource(name, record.version) for name in page]}
        if start + page_size < len(names):
            body["nextPageToken"] = str(start + page_size)
        return JSONResponse(body)

    async def _model_route(self, request: Request) -> Response:
        name = request.path_params["name"]
        model, _, action = name.partition(":")
        record = await self._record(request, model, action or "get")
        try:
            self._check_version(record.version)
            self._authorize(request)
            if request.method == "GET" and not action:
                self._require_model(model, None, record.version)
                return JSONResponse(self._model_resource(model, record.version))
            if request.method != "POST" or not action:
                raise _GeminiError(404, f"Method not found: {request.method} {request.url.path}")
            if not isinstance(record.body, dict):
                raise _GeminiError(400, "Invalid JSON payload received.")
            if action in {"generateContent", "streamGenerateContent"}:
                self._require_model(model, "generateContent", record.version)
                return await self._generate(request, record, stream=action == "streamGenerateContent")
            if action == "countTokens":
                self._require_model(model, "countTokens", record.version)
                return JSONResponse({"totalTokens": _request_tokens(record.body.get("contents"))})
            if action in {"embedContent", "batchEmbedContents"}:
                self._require_model(model, "embedContent", record.version)
                return await self._embed(request, record, batch=action == "batchEmbedContents")
            raise _GeminiError(404, f"Method not found: {action}")
        except _GeminiError as exc:
            return _error_response(exc)

    def _check_version(self, version: str) -> None:
        if version not in _VERSIONS:
            raise _GeminiError(404, f"Unknown API version {version}")

    def _require_model(self, model: str, method: str | None, version: str) -> None:
        with self._lock:
            methods = self._models.get(model)
        if methods is None or (method is not None and method not in methods):
            raise _GeminiError(
                404,
                f"models/{model} is not found for API version {version}, or is not supported for "
                f"{method or 'get'}. Call ListModels to see the list of available models and their supported "
                "methods.",
            )

    def _model_resource(self, model: str, version: str) -> dict[str, Any]:
        with self._lock:
            methods = list(self._models[model])
        embedding = "embedContent" in methods
        resource: dict[str, Any] = {
            "name": f"models/{model}",
            "version": "001",
            "displayName": model,
            "description": f"Fake {model} ({version})",
            "inputTokenLimit": 2048 if embedding else 1_048_576,
            "outputTokenLimit": 1 if embedding else 65_536,
            "supportedGenerationMethods": methods,
        }
        if not embedding:
            resource.update(temperature=1.0, maxTemperature=2.0, topP=0.95, topK=64, thinking=True)
        return resource

    async def _generate(self, request: Request, record: GeminiRequest, *, stream: bool) -> Response:
        body = record.body
        if not body.get("contents"):
            raise _GeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
        behaviour = self._script.next()
        if not await pause(request, behaviour.delay):
            return Response(status_code=499)
        if isinstance(behaviour, Fail):
            raise _failure(behaviour)
        prompt_tokens = _request_tokens(body.get("contents"), body.get("systemInstruction"))
        response_id = f"fake-{next(self._ids)}"
        chunks: list[dict[str, Any]]
        if isinstance(behaviour, Block):
            chunks = [_blocked(behaviour, prompt_tokens, record.model or "")]
        else:
            chunks = _reply_chunks(behaviour, body, prompt_tokens, record.model or "", stream=stream)
        for chunk in chunks:
            chunk["responseId"] = response_id
        if not stream:
            return JSONResponse(chunks[0])

        async def events() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _embed(self, request: Request, record: GeminiRequest, *, batch: bool) -> Response:
        behaviour = self._embedding_script.next()
        if not await pause(request, behaviour.delay):
            return Response(status_code=499)
        if isinstance(behaviour, Fail):
            raise _failure(behaviour)
        items = record.body.get("requests") if batch else [record.body]
        if not isinstance(items, list) or not items:
            raise _GeminiError(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(items) > 100:
            raise _GeminiError(400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        embeddings = []
        for item in items:
            dimension = int(item.get("outputDimensionality") or _EMBEDDING_DIMENSION)
            if not 1 <= dimension <= _EMBEDDING_DIMENSION:
                raise _GeminiError(400, f"Output dimensionality must be between 1 and {_EMBEDDING_DIMENSION}.")
            text = " ".join(_part_texts((item.get("content") or {}).get("parts")))
            embeddings.append({"values": hashed_embedding(text, dimension)})
        return JSONResponse({"embeddings": embeddings} if batch else {"embedding": embeddings[0]})


# ---- wire format helpers ---------------------------------------------------------------------------------------


def _part_texts(parts: Any) -> list[str]:
    return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body.get("contents") or []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return "".join(_part_texts(content.get("parts")))
    return ""


def _request_tokens(*contents: Any) -> int:
    total = 0
    for item in contents:
        for content in item if isinstance(item, list) else [item]:
            if isinstance(content, dict):
                total += sum(token_count(t) for t in _part_texts(content.get("parts")))
    return total


def _usage(prompt_tokens: int, candidate_tokens: int) -> dict[str, int]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidate_tokens,
        "totalTokenCount": prompt_tokens + candidate_tokens,
    }


def _reply_chunks(
    behaviour: Reply, body: dict[str, Any], prompt_tokens: int, model: str, *, stream: bool
) -> list[dict[str, Any]]:
    text = behaviour.text if behaviour.text is not None else f"echo: {_last_user_text(body)}"
    words = split_words(text)
    finish = "STOP"
    max_tokens = (body.get("generationConfig") or {}).get("maxOutputTokens")
    if isinstance(max_tokens, int) and len(words) > max_tokens:
        words, finish = words[:max_tokens], "MAX_TOKENS"
    # Three-ish chunks exercise the client's SSE reassembly without making long replies chatty.
    size = max(1, -(-len(words) // 3)) if stream else max(1, len(words))
    pieces = ["".join(words[i : i + size]) for i in range(0, len(words), size)] or [""]
    chunks = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        if last:
            candidate["finishReason"] = finish
        sent_tokens = sum(token_count(p) for p in pieces[: index + 1])
        chunks.append(
            {"candidates": [candidate], "usageMetadata": _usage(prompt_tokens, sent_tokens), "modelVersion": model}
        )
    return chunks


def _safety_ratings(blocked_reason: str | None) -> list[dict[str, Any]]:
    ratings = [{"category": c, "probability": "NEGLIGIBLE"} for c in _SAFETY_CATEGORIES]
    if blocked_reason == "SAFETY":
        ratings[0].update(probability="HIGH", blocked=True)
    return ratings


def _blocked(behaviour: Block, prompt_tokens: int, model: str) -> dict[str, Any]:
    if behaviour.stage == "prompt":
        # A blocked prompt has no candidates at all, only promptFeedback.
        return {
            "promptFeedback": {"blockReason": behaviour.reason, "safetyRatings": _safety_ratings(behaviour.reason)},
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
            "modelVersion": model,
        }
    return {
        "candidates": [
            {
                "content": {"role": "model"},
                "finishReason": behaviour.reason,
                "index": 0,
                "safetyRatings": _safety_ratings(behaviour.reason),
            }
        ],
        "usageMetadata": _usage(prompt_tokens, 0),
        "modelVersion": model,
    }


def _failure(fail: Fail) -> _GeminiError:
    message = fail.message or _DEFAULT_MESSAGES.get(fail.status, "Request failed.")
    details: list[dict[str, Any]] | None = None
    if fail.status == 429:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            }
        ]
        if fail.retry_after is not None:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{fail.retry_after:g}s"}
            )
    return _GeminiError(fail.status, message, details)


def _error_response(exc: _GeminiError) -> JSONResponse:
    error: dict[str, Any] = {
        "code": exc.status,
        "message": exc.message,
        "status": _STATUS_NAMES.get(exc.status, "UNKNOWN"),
    }
    if exc.details:
        error["details"] = exc.details
    return JSONResponse({"error": error}, status_code=exc.status)
