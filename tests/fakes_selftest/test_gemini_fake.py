"""The fake Gemini API, driven by the real google-genai client (default API version v1, and v1beta)."""

from __future__ import annotations

import math
import time

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.fakes import Block, Fail, FakeGemini, Reply

KEY = "test-gemini-key"
MODEL = "gemini-3.5-flash"


def make_client(gemini: FakeGemini, *, key: str = KEY, **options: object) -> genai.Client:
    # Keep the Client referenced while using it: genai.Client(...).models.x() lets it be collected mid-call, and
    # its finalizer closes the HTTP client ("Cannot send a request, as the client has been closed").
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=gemini.base_url, **options))  # type: ignore[arg-type]


async def test_generate_echoes_by_default_and_records_the_request(gemini: FakeGemini) -> None:
    client = make_client(gemini)
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents="Hello there",
        config=types.GenerateContentConfig(system_instruction="be brief", temperature=0.2, max_output_tokens=50),
    )
    assert response.text == "echo: Hello there"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count == 4

    request = gemini.last_request("generateContent")
    assert request.path == f"/v1/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert request.body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert request.body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}
    assert request.prompt == "Hello there"


def test_fixed_reply_history_and_v1beta(gemini: FakeGemini) -> None:
    gemini.set_behaviour(Reply("We open at 9."))
    client = make_client(gemini, api_version="v1beta")
    history = [
        types.Content(role="user", parts=[types.Part(text="hi")]),
        types.Content(role="model", parts=[types.Part(text="hello")]),
        types.Content(role="user", parts=[types.Part(text="when do you open?")]),
    ]
    assert client.models.generate_content(model=MODEL, contents=history).text == "We open at 9."
    assert client.models.generate_content(model=MODEL, contents="again").text == "We open at 9."
    assert gemini.last_request().version == "v1beta"
    assert gemini.requests_for("generateContent")[0].prompt == "when do you open?"


def test_max_output_tokens_truncates_with_max_tokens_reason(gemini: FakeGemini) -> None:
    gemini.set_behaviour(Reply("one two three four five"))
    client = make_client(gemini)
    response = client.models.generate_content(
        model=MODEL, contents="x", config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert response.text == "one two "
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS  # type: ignore[index]


async def test_stream_arrives_in_chunks(gemini: FakeGemini) -> None:
    gemini.set_behaviour(Reply("Our shop is open from nine to six every day"))
    stream = await make_client(gemini).aio.models.generate_content_stream(model=MODEL, contents="hours?")
    chunks = [chunk.text async for chunk in stream]
    assert len(chunks) == 3
    assert "".join(c or "" for c in chunks) == "Our shop is open from nine to six every day"
    assert gemini.last_request().query == {"alt": "sse"}


def test_429_is_a_client_error_with_retry_info(gemini: FakeGemini) -> None:
    gemini.enqueue(Fail(429, retry_after=47))
    client = make_client(gemini)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    retry = [d for d in caught.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"}]
    assert client.models.generate_content(model=MODEL, contents="hi").text == "echo: hi"  # one-shot


def test_500_is_a_server_error(gemini: FakeGemini) -> None:
    gemini.enqueue(Fail(500), Fail(503))
    client = make_client(gemini)
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (500, "INTERNAL")
    with pytest.raises(errors.ServerError, match="UNAVAILABLE"):
        client.models.generate_content(model=MODEL, contents="hi")


def test_delay_makes_the_client_time_out(gemini: FakeGemini) -> None:
    gemini.enqueue(Reply("late", delay=2))
    client = make_client(gemini, timeout=300)  # milliseconds
    started = time.monotonic()
    # google-genai runs on httpx2, a separate package: its timeouts are httpx2.TimeoutException, not httpx's.
    with pytest.raises(httpx2.TimeoutException):
        client.models.generate_content(model=MODEL, contents="hi")
    assert time.monotonic() - started < 1.5


def test_safety_blocks(gemini: FakeGemini) -> None:
    gemini.enqueue(Block("prompt"), Block("response"))
    client = make_client(gemini)

    blocked_prompt = client.models.generate_content(model=MODEL, contents="something nasty")
    assert blocked_prompt.prompt_feedback is not None
    assert blocked_prompt.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not blocked_prompt.candidates
    assert blocked_prompt.text is None

    blocked_answer = client.models.generate_content(model=MODEL, contents="something nasty")
    assert blocked_answer.candidates[0].finish_reason == types.FinishReason.SAFETY  # type: ignore[index]
    assert blocked_answer.text is None


def test_embeddings_are_deterministic_and_sized(gemini: FakeGemini) -> None:
    client = make_client(gemini)
    texts = ["opening hours of the shop", "shop opening hours", "delivery to Tashkent"]
    result = client.models.embed_content(
        model="gemini-embedding-001",
        contents=texts,
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=64),
    )
    vectors = [e.values for e in result.embeddings or []]
    assert [len(v or []) for v in vectors] == [64, 64, 64]
    a, b, c = (v or [] for v in vectors)
    assert math.isclose(sum(x * x for x in a), 1.0)

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cosine(a, b) > 0.5 > cosine(a, c)
    request = gemini.last_request("batchEmbedContents")
    assert request.body["requests"][0]["taskType"] == "RETRIEVAL_DOCUMENT"

    again = client.models.embed_content(
        model="gemini-embedding-001", contents=texts[0], config=types.EmbedContentConfig(output_dimensionality=64)
    )
    assert again.embeddings[0].values == a  # type: ignore[index]

    gemini.enqueue_embedding(Fail(429))
    with pytest.raises(errors.ClientError, match="RESOURCE_EXHAUSTED"):
        client.models.embed_content(model="gemini-embedding-001", contents="x")


def test_models_get_and_list_for_startup_checks(gemini: FakeGemini) -> None:
    client = make_client(gemini)
    model = client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}"
    assert model.supported_actions == ["generateContent", "countTokens"]
    names = [m.name for m in client.models.list(config={"page_size": 3})]
    assert f"models/{MODEL}" in names and "models/gemini-embedding-001" in names
    assert len(gemini.requests_for("list")) > 1  # paginated
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="gemini-1.0-pro")
    assert caught.value.code == 404
    with pytest.raises(errors.ClientError, match="not supported for generateContent"):
        client.models.generate_content(model="gemini-embedding-001", contents="hi")


def test_api_key_is_checked(gemini: FakeGemini) -> None:
    wrong = make_client(gemini, key="wrong")
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in (caught.value.message or "")
    gemini.add_api_key("tenant-2-key")
    tenant = make_client(gemini, key="tenant-2-key")
    assert tenant.models.generate_content(model=MODEL, contents="hi").text


def test_count_tokens(gemini: FakeGemini) -> None:
    client = make_client(gemini)
    result = client.models.count_tokens(model=MODEL, contents="three little words")
    assert result.total_tokens == 3
