"""Gemini and OpenAI-compatible providers through their real SDKs against loopback fakes (429, 5xx, timeouts)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot_runtime.answering.chunking import chunk_document
from bot_runtime.answering.engine import Answerer, ProviderError
from bot_runtime.answering.index import KnowledgeIndex
from bot_runtime.answering.providers.gemini import GeminiEmbedder, GeminiProvider
from bot_runtime.answering.providers.openai_compat import OpenAICompatProvider
from bot_runtime.answering.schemas import AnswerRequest, BotProfile, ModelTier, Turn
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.llm_script import Block, Fail, Reply
from tests.fakes.openai_api import FakeOpenAI

KB = """# Доставка
Доставка по городу бесплатная, привозим за 2 дня.

# Гарантия
Гарантия на всю мебель 18 месяцев.
"""
QUESTION = "Сколько длится гарантия?"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.build(chunk_document(KB, source_id="kb-ru", language="ru"))


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_keys=["test-gemini-key"])
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_keys=["test-openai-key"], prefix="/compatible-mode/v1")
    with fake.serve():
        yield fake


@pytest.fixture(autouse=True)
def _reset(gemini: FakeGemini, llm: FakeOpenAI) -> None:
    gemini.reset()
    llm.reset()


def make_request(index: KnowledgeIndex, tier: ModelTier = ModelTier.FLASH) -> AnswerRequest:
    return AnswerRequest(
        bot=BotProfile(name="Chinor", language="ru", model_tier=tier, instructions="Отвечай кратко."),
        question=QUESTION,
        language="ru",
        history=(Turn("user", "Здравствуйте"), Turn("assistant", "Здравствуйте! Чем помочь?")),
        passages=tuple(index.search(QUESTION, language="ru")),
    )


def gemini_provider(fake: FakeGemini, **options: object) -> GeminiProvider:
    return GeminiProvider("test-gemini-key", base_url=fake.base_url, **options)  # type: ignore[arg-type]


async def test_gemini_answer_with_sources_usage_and_prompt_layout(gemini: FakeGemini, index: KnowledgeIndex) -> None:
    gemini.set_behaviour(Reply("Гарантия 18 месяцев [S1]."))
    result = await gemini_provider(gemini).answer(make_request(index, ModelTier.PRO))
    assert result.text == "Гарантия 18 месяцев." and result.source_ids == ("kb-ru",) and not result.fallback
    assert result.provider == "gemini" and result.model == "gemini-3.1-pro-preview"
    assert result.tokens_in > 0 and result.tokens_out > 0
    sent = gemini.last_request("generateContent")
    assert sent.model == "gemini-3.1-pro-preview"
    system = sent.body["systemInstruction"]["parts"][0]["text"]
    assert "[S1]" in system and "Отвечай кратко." in system and QUESTION not in system
    assert [c["role"] for c in sent.body["contents"]] == ["user", "model", "user"]
    assert sent.body["contents"][-1]["parts"][0]["text"] == QUESTION


async def test_gemini_retries_429_then_answers(gemini: FakeGemini, index: KnowledgeIndex) -> None:
    gemini.enqueue(Fail(429, retry_after=0.05), Fail(503), Reply("Гарантия 18 месяцев [S1]."))
    started = time.monotonic()
    result = await gemini_provider(gemini, max_retries=2).answer(make_request(index))
    assert result.text == "Гарантия 18 месяцев."
    assert len(gemini.requests_for("generateContent")) == 3
    assert time.monotonic() - started >= 0.05  # the server's RetryInfo delay was honoured


async def test_gemini_gives_up_after_retries_and_on_client_errors(gemini: FakeGemini, index: KnowledgeIndex) -> None:
    gemini.enqueue(Fail(500), Fail(500))
    with pytest.raises(ProviderError) as error:
        await gemini_provider(gemini, max_retries=1).answer(make_request(index))
    assert error.value.status == 500 and error.value.retryable
    gemini.reset()
    gemini.enqueue(Fail(400))
    with pytest.raises(ProviderError) as error:
        await gemini_provider(gemini, max_retries=3).answer(make_request(index))
    assert error.value.status == 400 and not error.value.retryable
    assert len(gemini.requests_for("generateContent")) == 1


async def test_gemini_timeout(gemini: FakeGemini, index: KnowledgeIndex) -> None:
    gemini.enqueue(Reply("late", delay=3))
    started = time.monotonic()
    with pytest.raises(ProviderError):
        await gemini_provider(gemini, timeout=0.3, max_retries=0).answer(make_request(index))
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("stage", ["prompt", "response"])
async def test_gemini_safety_block_is_a_blocked_fallback(gemini: FakeGemini, index: KnowledgeIndex, stage: str) -> None:
    gemini.enqueue(Block(stage))  # type: ignore[arg-type]
    result = await gemini_provider(gemini).answer(make_request(index))
    assert result.fallback and result.blocked == "provider_safety" and result.text == ""


async def test_answerer_falls_back_offline_when_gemini_keeps_failing(gemini: FakeGemini, index: KnowledgeIndex) -> None:
    gemini.set_behaviour(Fail(503))
    answerer = Answerer(provider=gemini_provider(gemini, max_retries=1), timeout=10)
    result = await answerer.answer(index, BotProfile(language="ru"), QUESTION)
    assert result.degraded and result.provider == "offline" and "18 месяцев" in result.text


async def test_gemini_models_check_and_embeddings(gemini: FakeGemini) -> None:
    provider = GeminiProvider("test-gemini-key", base_url=gemini.base_url, models={ModelTier.FLASH: "gemini-0-retired"})
    assert await provider.check_models(wait=3) == {"gemini-0-retired": False, "gemini-3.1-pro-preview": True}
    embedder = GeminiEmbedder("test-gemini-key", base_url=gemini.base_url, dimension=16)
    vectors = embedder.embed(["доставка бесплатная", "гарантия"], "document")
    assert len(vectors) == 2 and all(len(v) == 16 for v in vectors)
    sent = gemini.last_request("batchEmbedContents").body["requests"][0]
    assert sent["taskType"] == "RETRIEVAL_DOCUMENT" and sent["outputDimensionality"] == 16


def compat_provider(fake: FakeOpenAI, **options: object) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        "test-openai-key",
        base_url=fake.base_url,
        model="qwen-plus",
        **options,  # type: ignore[arg-type]
    )


async def test_openai_compat_answer(llm: FakeOpenAI, index: KnowledgeIndex) -> None:
    llm.set_behaviour(Reply("Гарантия 18 месяцев [S1]."))
    result = await compat_provider(llm).answer(make_request(index))
    assert result.text == "Гарантия 18 месяцев." and result.source_ids == ("kb-ru",)
    assert result.provider == "openai_compat" and result.model == "qwen-plus"
    assert result.tokens_in > 0 and result.tokens_out > 0
    messages = llm.last_request("chat.completions").body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert QUESTION not in messages[0]["content"] and messages[-1]["content"] == QUESTION


async def test_openai_compat_retries_and_failures(llm: FakeOpenAI, index: KnowledgeIndex) -> None:
    llm.enqueue(Fail(429, retry_after=0.05), Fail(502), Reply("ok [S1]"))
    assert (await compat_provider(llm, max_retries=2).answer(make_request(index))).text == "ok"
    assert len(llm.requests_for("chat.completions")) == 3
    llm.reset()
    llm.enqueue(Fail(401))
    with pytest.raises(ProviderError) as error:
        await compat_provider(llm, max_retries=2).answer(make_request(index))
    assert error.value.status == 401 and len(llm.requests_for("chat.completions")) == 1
    llm.reset()
    llm.enqueue(Reply("late", delay=3))
    with pytest.raises(ProviderError):
        await compat_provider(llm, timeout=0.3, max_retries=0).answer(make_request(index))


async def test_openai_compat_content_filter(llm: FakeOpenAI, index: KnowledgeIndex) -> None:
    llm.enqueue(Block("response"))
    result = await compat_provider(llm).answer(make_request(index))
    assert result.fallback and result.blocked == "provider_safety"


def test_sdks_are_imported_lazily() -> None:
    import subprocess

    code = (
        "import sys\n"
        "import bot_runtime.answering\n"
        "import bot_runtime.answering.providers.gemini, bot_runtime.answering.providers.openai_compat\n"
        "print(any(m.startswith(('google.genai', 'openai', 'sqlalchemy', 'control_plane')) for m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
