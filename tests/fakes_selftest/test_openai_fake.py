"""The fake OpenAI-compatible server, driven by the official ``openai`` client (as used for Qwen via DashScope)."""

from __future__ import annotations

import time

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes import Block, Fail, FakeOpenAI, Reply

KEY = "test-openai-key"
MODEL = "qwen-plus"


def make_client(fake: FakeOpenAI, *, key: str = KEY, **options: object) -> OpenAI:
    return OpenAI(api_key=key, base_url=fake.base_url, max_retries=0, **options)  # type: ignore[arg-type]


async def test_chat_completion_echoes_and_records(openai_fake: FakeOpenAI) -> None:
    client = AsyncOpenAI(api_key=KEY, base_url=openai_fake.base_url, max_retries=0)
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there"}],
        temperature=0.2,
    )
    assert completion.choices[0].message.content == "echo: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 4
    request = openai_fake.last_request("chat.completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert request.body["temperature"] == 0.2
    await client.close()


def test_fixed_reply_and_length_limit(openai_fake: FakeOpenAI) -> None:
    openai_fake.set_behaviour(Reply("one two three four"))
    client = make_client(openai_fake)
    messages = [{"role": "user", "content": "hi"}]
    assert client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content == (  # type: ignore[arg-type]
        "one two three four"
    )
    short = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("one two ", "length")


def test_stream_with_usage(openai_fake: FakeOpenAI) -> None:
    openai_fake.set_behaviour(Reply("We deliver across Uzbekistan within two days"))
    client = make_client(openai_fake)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "delivery?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "We deliver across Uzbekistan within two days"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_errors_map_to_client_exceptions(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Fail(429, retry_after=2), Fail(500))
    client = make_client(openai_fake)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        make_client(openai_fake, key="sk-wrong-key-123").models.list()


def test_client_retries_consume_queued_failures(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Fail(429, retry_after=0.01), Reply("after retry"))
    client = OpenAI(api_key=KEY, base_url=openai_fake.base_url, max_retries=1)
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "after retry"
    assert len(openai_fake.requests_for("chat.completions")) == 2


def test_delay_makes_the_client_time_out(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Reply("late", delay=2))
    client = make_client(openai_fake, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 1.5


def test_content_moderation(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Block("prompt"), Block("response"))
    client = make_client(openai_fake)
    messages = [{"role": "user", "content": "something nasty"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert caught.value.code == "data_inspection_failed"
    filtered = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert filtered.choices[0].finish_reason == "content_filter"


def test_models_and_embeddings(openai_fake: FakeOpenAI) -> None:
    client = make_client(openai_fake)
    assert MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve(MODEL).id == MODEL
    result = client.embeddings.create(
        model="text-embedding-v4", input=["shop hours", "hours of the shop"], dimensions=32
    )
    first, second = (d.embedding for d in result.data)
    assert len(first) == 32
    assert sum(a * b for a, b in zip(first, second, strict=True)) > 0.5


def test_dashscope_style_prefix() -> None:
    fake = FakeOpenAI(prefix="/compatible-mode/v1", api_keys=["sk-dash"])
    with fake.serve():
        assert fake.base_url.endswith("/compatible-mode/v1")
        client = OpenAI(api_key="sk-dash", base_url=fake.base_url, max_retries=0)
        reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "salom"}])
        assert reply.choices[0].message.content == "echo: salom"
