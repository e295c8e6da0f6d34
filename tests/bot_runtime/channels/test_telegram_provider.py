"""Telegram answers through the runtime's shared answerer: the tenant's model provider when its config has one."""

from __future__ import annotations

import uuid

from bot_runtime.answering import KnowledgeIndex, chunk_faq
from bot_runtime.answering.tenant import TenantAnswerer
from bot_runtime.channels.telegram import EngineAnswer, Question
from bot_runtime.crypto import encrypt_json
from tests.bot_runtime.channels.test_widget import FAQ, tenant_config
from tests.fakes import FakeOpenAI, Reply


async def test_telegram_uses_the_tenants_provider() -> None:
    llm = FakeOpenAI(api_keys=["test-openai-key"], prefix="/compatible-mode/v1")
    artifact = KnowledgeIndex.build(chunk_faq(FAQ, source_id="faq", language="en")).to_bytes()

    async def load(bot_id: str, version: int) -> bytes | None:
        return artifact

    with llm.serve():
        llm.enqueue(Reply("We deliver to Samarkand in two days [S1]."))
        tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
        providers = {
            "openai_compat": encrypt_json(
                {"api_key": "test-openai-key", "model": "qwen-plus", "base_url": llm.base_url}
            )
        }
        config = tenant_config(tenant_id, bot_id, providers=providers)
        answer = EngineAnswer(TenantAnswerer(loader=load))
        result = await answer(
            Question(
                tenant=config,
                bot=config.bots[0],
                text="Do you deliver to Samarkand?",
                language="en",
                language_hint="en",
            )
        )
    assert result.provider == "openai_compat"
    assert result.text == "We deliver to Samarkand in two days."
    assert "Samarkand" in llm.last_request("chat.completions").body["messages"][-1]["content"]


async def test_telegram_without_a_provider_answers_offline() -> None:
    artifact = KnowledgeIndex.build(chunk_faq(FAQ, source_id="faq", language="en")).to_bytes()

    async def load(bot_id: str, version: int) -> bytes | None:
        return artifact

    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    config = tenant_config(tenant_id, bot_id)
    result = await EngineAnswer(TenantAnswerer(loader=load))(
        Question(
            tenant=config, bot=config.bots[0], text="Do you deliver to Samarkand?", language="en", language_hint="en"
        )
    )
    assert result.provider == "offline"
    assert not result.fallback
