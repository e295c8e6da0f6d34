"""What the fake LLM servers do on their next call: behaviours a test programs, shared by the Gemini and OpenAI fakes.

A fake keeps one default behaviour (initially :class:`Reply` with ``text=None``, an echo of the last user message) and
a FIFO of one-shot behaviours that the next calls consume first::

    fake.set_behaviour(Reply("Hi!"))                   # every later call answers "Hi!"
    fake.enqueue(Fail(429, retry_after=7), Reply("ok")) # next call: 429, the one after: "ok", then the default again
    fake.enqueue(Reply("slow", delay=3))                # for client timeout tests
    fake.enqueue(Block("prompt"))                       # provider-side safety block

Each provider fake renders these in its own wire format.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

__all__ = ["Behaviour", "Block", "Fail", "Reply", "Script", "hashed_embedding", "pause", "split_words", "token_count"]


@dataclass(frozen=True)
class Reply:
    """Answer normally. ``text=None`` echoes the last user message as ``"echo: <message>"``."""

    text: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error in the provider's error format (429, 500, 503, 400, 401/403 ...).

    ``retry_after`` (seconds) becomes the provider's retry hint: Gemini's ``RetryInfo.retryDelay``, OpenAI's
    ``retry-after`` header.
    """

    status: int
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Block:
    """A safety block: ``"prompt"`` refuses the input, ``"response"`` stops the candidate for safety."""

    stage: Literal["prompt", "response"] = "prompt"
    reason: str = "SAFETY"
    delay: float = 0.0


Behaviour = Reply | Fail | Block


class Script:
    """Thread-safe default behaviour plus a queue of one-shot behaviours (tests program it from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default: Behaviour = Reply()
        self._queue: deque[Behaviour] = deque()

    def set_default(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._default = behaviour

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def next(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        with self._lock:
            self._default = Reply()
            self._queue.clear()


_WORD = re.compile(r"\w+", re.UNICODE)


def split_words(text: str) -> list[str]:
    """Whitespace-preserving word chunks: ``"".join(split_words(t)) == t``; used for token counts and streaming."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def token_count(text: str) -> int:
    """A stand-in token count (one per word); deterministic, which is all tests need."""
    return len(_WORD.findall(text))


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """Deterministic unit-length bag-of-words vector: texts sharing words get a positive cosine similarity.

    Each lower-cased word is hashed to a coordinate and a sign, so retrieval tests can rely on "same words, near
    vectors" without a model. Text without words yields the zero vector.
    """
    vector = [0.0] * dimension
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        vector[value % dimension] += 1.0 if (value >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


async def pause(request: Request, seconds: float) -> bool:
    """Sleep ``seconds`` unless the client hangs up first (it timed out); returns False if it did.

    Checking for the disconnect keeps a "slow" fake from holding the server's shutdown for the whole delay.
    """
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(remaining, 0.05))
        if await request.is_disconnected():
            return False
    return True
