"""Loopback fakes of the external APIs BotFactory talks to (Telegram Bot API, Gemini, OpenAI-compatible chat).

Each fake is a small ASGI app faithful to its provider's wire protocol, served by :class:`FakeServer` on 127.0.0.1 so
our real client libraries run unchanged against it. Tests program and inspect a fake through Python methods.
"""

from tests.fakes.gemini_api import FakeGemini
from tests.fakes.llm_script import Block, Fail, Reply
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import FakeServer
from tests.fakes.telegram_api import FakeTelegramAPI, make_token

__all__ = ["Block", "Fail", "FakeGemini", "FakeOpenAI", "FakeServer", "FakeTelegramAPI", "Reply", "make_token"]
