"""Helpers for the runtime-side Telegram tests: a scripted answer function, a tenant config, and one entry's run."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot_runtime import contract
from bot_runtime.answering.schemas import AnswerResult
from bot_runtime.channels.telegram import Question, TelegramChannel
from bot_runtime.crypto import encrypt_json
from bot_runtime.runtime import HandlerContext, Runtime
from tests.fakes import make_token

TOKEN = make_token(424242)
BOT_USERNAME = "shop_bot"


@dataclass
class ScriptedAnswers:
    """A small real answer function: records the questions, answers with ``text`` (or "Answer: <question>")."""

    text: str | None = None
    questions: list[Question] = field(default_factory=list)
    delay: float = 0.0  # seconds each answer takes

    async def __call__(self, question: Question) -> AnswerResult:
        self.questions.append(question)
        if self.delay:
            await asyncio.sleep(self.delay)
        return AnswerResult(
            text=self.text if self.text is not None else f"Answer: {question.text}",
            provider="scripted",
            model="script-1",
            tokens_in=3,
            tokens_out=5,
            language=question.language,
            source_ids=("src-1",),
        )


def tenant_config(
    tenant_id: str,
    bot_id: str,
    *,
    mode: str = "webhook",
    welcome: str = "Welcome to Shop!",
    messages_per_day: int | None = 100,
    api_base_url: str = "",
    token: str = TOKEN,
) -> contract.TenantConfig:
    settings = {"mode": mode, "username": BOT_USERNAME}
    if api_base_url:
        settings["api_base_url"] = api_base_url
    channel = contract.ChannelConfig(kind="telegram", credentials=encrypt_json({"token": token}), settings=settings)
    bot = contract.BotConfig(
        id=bot_id, public_id="b_test", name="Shop", language="en", welcome_message=welcome, channels=[channel]
    )
    return contract.TenantConfig(
        tenant_id=tenant_id,
        version=1,
        plan=contract.PlanLimits(messages_per_day=messages_per_day),
        bots=[bot],
    )


def bot_id_of(runtime: Runtime) -> str:
    assert runtime.config is not None
    return runtime.config.bots[0].id


async def process(channel: TelegramChannel, runtime: Runtime, update: dict[str, object]) -> HandlerContext:
    """Hand one update to the channel as the runtime core would, and return the context (events, sent flag)."""
    bot_id = bot_id_of(runtime)
    event = contract.InboundEvent(
        event_id=f"tg:{bot_id}:{update['update_id']}",
        bot_id=bot_id,
        kind="telegram.update",
        payload=update,
        received_at=time.time(),
    )
    ctx = HandlerContext(runtime, event, entry_id=f"{int(time.time() * 1000)}-{update['update_id']}")
    await channel.handle(ctx)
    return ctx
