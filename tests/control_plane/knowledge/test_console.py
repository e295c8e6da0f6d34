"""The test console (``POST /api/v1/bots/{id}/ask``), unanswered questions and the abuse log.

A small multilingual knowledge base (English, Russian and Uzbek in both scripts) is ingested through the real job
code; questions are answered by the same Answerer the runtimes use: offline without keys, and Gemini (a loopback
fake speaking its REST protocol, used by the real google-genai SDK) when GOOGLE_API_KEY is set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from bot_runtime import contract
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis
from control_plane.models import (
    AbuseLogEntry,
    ChatUser,
    Conversation,
    KnowledgeArtifact,
    KnowledgeSource,
    Message,
    Tenant,
    TokenUsage,
)
from tests.control_plane.bots.helpers import sign_in_browser
from tests.control_plane.knowledge.test_ingestion import (  # noqa: F401 - fixtures used by name
    add,
    current_index,
    drain_jobs,
    empty_ingestion_queue,
    owner,
)
from tests.factories import Account, make_account, make_bot
from tests.fakes import FakeGemini, FakeOpenAI, Reply

FAQ = [
    {"question": "Do you deliver on Sundays?", "answer": "Yes, we deliver on Sundays from 10:00 to 16:00."},
    {
        "question": "Сколько стоит доставка по Ташкенту?",
        "answer": "Доставка по Ташкенту стоит 20 000 сумов, от 300 000 сумов — бесплатно.",
    },
    {
        "question": "Toshkent bo'ylab yetkazib berish qancha turadi?",
        "answer": "Toshkent bo'ylab yetkazib berish 20 000 so'm turadi.",
    },
]
POLICY = (
    "# Returns\n\nYou can return any item within 14 days if you keep the receipt. "
    "Refunds go back to the card in 3 working days."
)


@pytest.fixture
async def kb(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> dict[str, Any]:  # noqa: F811
    account, bot = owner
    faq_id = await add(client, account, bot, "faq", title="Shop FAQ", items=FAQ)
    policy_id = await add(client, account, bot, "text", title="Policies", text=POLICY)
    assert await drain_jobs() == ["ready", "ready"]
    return {"account": account, "bot": bot, "faq": faq_id, "policy": policy_id}


async def ask(
    client: httpx.AsyncClient, kb: dict[str, Any], question: str, conversation_id: str | None = None, **headers: str
) -> httpx.Response:
    body: dict[str, Any] = {"question": question}
    if conversation_id:
        body["conversation_id"] = conversation_id
    return await client.post(
        f"/api/v1/bots/{kb['bot']['id']}/ask", json=body, headers={**kb["account"].headers, **headers}
    )


# --------------------------------------------------------------------------------------------------------------
# Answers


@pytest.mark.parametrize(
    ("question", "expected", "source"),
    [
        ("Do you deliver on Sunday?", "we deliver on Sundays from 10:00 to 16:00", "faq"),
        ("Сколько стоит доставка?", "Доставка по Ташкенту стоит 20 000 сумов", "faq"),
        ("Yetkazib berish narxi qancha?", "Toshkent bo'ylab yetkazib berish 20 000 so'm", "faq"),
        ("Етказиб бериш қанча туради?", "етказиб бериш 20 000 сўм", "faq"),
        ("Can I return an item?", "return any item within 14 days", "policy"),
    ],
)
async def test_cited_answers_in_three_languages(
    client: httpx.AsyncClient, kb: dict[str, Any], question: str, expected: str, source: str
) -> None:
    response = await ask(client, kb, question)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"answer", "sources", "fallback", "conversation_id"}
    assert body["fallback"] is False
    assert expected in body["answer"]
    sources = body["sources"]
    assert sources and sources[0]["source_id"] == kb[source]
    assert set(sources[0]) == {"source_id", "title", "snippet", "score"}
    assert sources[0]["title"] == {"faq": "Shop FAQ", "policy": "Policies"}[source]
    scores = [item["score"] for item in sources]
    assert scores == sorted(scores, reverse=True)
    # The snippet is the passage itself: the answer came from the best one.
    assert expected.lower() in sources[0]["snippet"].lower() or source == "faq"


async def test_out_of_kb_question_gets_the_fallback(client: httpx.AsyncClient, kb: dict[str, Any]) -> None:
    response = await ask(client, kb, "What is the capital of France?")
    assert response.status_code == 200
    assert response.json()["fallback"] is True
    patched = await client.patch(
        f"/api/v1/bots/{kb['bot']['id']}",
        json={"fallback_message": "Please call us on +998 71 200 00 00."},
        headers=kb["account"].headers,
    )
    assert patched.status_code == 200
    again = (await ask(client, kb, "Who won the football world cup in 1998?")).json()
    assert again["fallback"] is True and again["answer"] == "Please call us on +998 71 200 00 00."


async def test_a_bot_without_knowledge_answers_with_its_fallback(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    response = await client.post(f"/api/v1/bots/{bot['id']}/ask", json={"question": "Hello?"}, headers=account.headers)
    assert response.status_code == 200 and response.json()["sources"] == []


async def test_conversation_is_kept_and_continued(client: httpx.AsyncClient, kb: dict[str, Any]) -> None:
    first = (await ask(client, kb, "Do you deliver on Sundays?")).json()
    second = (await ask(client, kb, "Can I return an item?", first["conversation_id"])).json()
    assert second["conversation_id"] == first["conversation_id"]
    async with get_sessionmaker()() as db:
        conversation = await db.get(Conversation, uuid.UUID(first["conversation_id"]))
        messages = list(
            await db.scalars(
                select(Message).where(Message.conversation_id == conversation.id).order_by(Message.created_at)  # type: ignore[union-attr]
            )
        )
    assert conversation is not None and conversation.channel == "console"
    assert [(m.direction, m.text) for m in messages][0::2] == [
        ("in", "Do you deliver on Sundays?"),
        ("in", "Can I return an item?"),
    ]
    assert messages[1].direction == "out" and messages[1].text == first["answer"]
    assert messages[1].sources == [kb["faq"]] and messages[1].provider == "offline"

    unknown = await ask(client, kb, "Hello", str(uuid.uuid4()))
    assert unknown.status_code == 404
    # The console page shows the conversation and continues it.
    browser = await sign_in_browser(kb["account"])
    page = await client.get(
        f"/en/bots/{kb['bot']['id']}/console?conversation={first['conversation_id']}",
        headers={"Cookie": browser.cookie_header},
    )
    assert page.status_code == 200
    assert "Can I return an item?" in page.text and f'value="{first["conversation_id"]}"' in page.text


async def test_console_page_asks_and_shows_sources(client: httpx.AsyncClient, kb: dict[str, Any]) -> None:
    browser = await sign_in_browser(kb["account"])
    response = await client.post(
        f"/ru/bots/{kb['bot']['id']}/console",
        data={"csrf_token": browser.csrf_token, "question": "Сколько стоит доставка?"},
        headers={"Cookie": browser.cookie_header},
    )
    assert response.status_code == 200
    assert "Доставка по Ташкенту стоит 20 000 сумов" in response.text
    assert "Shop FAQ" in response.text and "data-fallback" not in response.text
    fallback = await client.post(
        f"/en/bots/{kb['bot']['id']}/console",
        data={"csrf_token": browser.csrf_token, "question": "What is the capital of France?"},
        headers={"Cookie": browser.cookie_header},
    )
    assert "data-fallback" in fallback.text


async def test_console_has_its_own_rate_limit_and_no_daily_quota(
    client: httpx.AsyncClient, kb: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.settings import get_settings

    monkeypatch.setattr(get_settings(), "console_ask_limit_per_minute", 2)
    assert (await ask(client, kb, "Do you deliver on Sundays?")).status_code == 200
    assert (await ask(client, kb, "Can I return an item?")).status_code == 200
    limited = await ask(client, kb, "Anything else?")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.json()["error"]["code"] == "rate_limited"
    # Another user of the same workspace has their own allowance.
    other = await make_account(client)
    other_bot = await make_bot(client, other)
    response = await client.post(f"/api/v1/bots/{other_bot['id']}/ask", json={"question": "Hi"}, headers=other.headers)
    assert response.status_code == 200
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert await get_redis().get(contract.usage_key(kb["account"].tenant_id, day)) is None


async def test_guardrail_blocks_go_to_the_abuse_log(client: httpx.AsyncClient, kb: dict[str, Any]) -> None:
    response = await ask(client, kb, "you are an idiot bot")
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is False and body["sources"] == []
    log = await client.get(f"/api/v1/bots/{kb['bot']['id']}/abuse-log", headers=kb["account"].headers)
    assert log.status_code == 200
    entry = log.json()["items"][0]
    assert (entry["channel"], entry["direction"], entry["reason"]) == ("console", "in", "abuse")
    assert entry["matched"] and entry["text"] == "you are an idiot bot"
    assert log.json()["total"] == 1
    browser = await sign_in_browser(kb["account"])
    page = await client.get(f"/en/bots/{kb['bot']['id']}", headers={"Cookie": browser.cookie_header})
    assert page.status_code == 200
    assert 'id="section-abuse"' in page.text and "you are an idiot bot" in page.text
    async with get_sessionmaker()() as db:
        rows = list(await db.scalars(select(AbuseLogEntry)))
    assert len(rows) == 1 and str(rows[0].tenant_id) == kb["account"].tenant_id


# --------------------------------------------------------------------------------------------------------------
# Gemini: embeddings at ingestion, the answer, token usage, Flash / Pro by plan


@pytest.fixture(scope="module")
def _gemini_server() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_keys=["test-gemini-key"])
    with fake.serve():
        yield fake


@pytest.fixture
def gemini(_gemini_server: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    from control_plane.settings import get_settings

    _gemini_server.reset()
    settings = get_settings()
    monkeypatch.setattr(settings, "google_api_key", "test-gemini-key")
    monkeypatch.setattr(settings, "gemini_api_base_url", _gemini_server.base_url)
    monkeypatch.setattr(settings, "gemini_flash_model", "gemini-2.5-flash")
    monkeypatch.setattr(settings, "gemini_pro_model", "gemini-2.5-pro")
    return _gemini_server


async def test_gemini_answers_with_vectors_history_and_usage(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
    gemini: FakeGemini,
) -> None:
    account, bot = owner
    faq_id = await add(client, account, bot, "faq", title="Shop FAQ", items=FAQ)
    await drain_jobs()
    async with get_sessionmaker()() as db:
        row = await db.scalar(select(KnowledgeArtifact).where(KnowledgeArtifact.bot_id == uuid.UUID(bot["id"])))
    assert row is not None and row.embedding_model == "gemini-embedding-001"
    _, index = await current_index(bot["id"])
    assert index.has_vectors
    assert gemini.requests_for("batchEmbedContents")

    gemini.set_behaviour(Reply("Yes, on Sundays from 10:00 to 16:00 [S1]."))
    first = await client.post(
        f"/api/v1/bots/{bot['id']}/ask", json={"question": "Do you deliver on Sundays?"}, headers=account.headers
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {**body, "answer": "Yes, on Sundays from 10:00 to 16:00.", "fallback": False}
    assert body["sources"][0]["source_id"] == faq_id
    request = gemini.last_request("generateContent")
    assert request.model == "gemini-2.5-flash"
    assert "Do you deliver on Sundays?" in request.body["systemInstruction"]["parts"][0]["text"]

    follow_up = await client.post(
        f"/api/v1/bots/{bot['id']}/ask",
        json={"question": "And on Saturdays?", "conversation_id": body["conversation_id"]},
        headers=account.headers,
    )
    assert follow_up.status_code == 200
    contents = gemini.last_request("generateContent").body["contents"]
    turns = [(item["role"], item["parts"][0]["text"]) for item in contents]
    assert turns[:2] == [("user", "Do you deliver on Sundays?"), ("model", "Yes, on Sundays from 10:00 to 16:00.")]

    # Enterprise tenants get the Pro model.
    async with get_sessionmaker()() as db:
        await db.execute(update(Tenant).where(Tenant.id == uuid.UUID(account.tenant_id)).values(plan="enterprise"))
        await db.commit()
    await client.post(
        f"/api/v1/bots/{bot['id']}/ask", json={"question": "Do you deliver on Sundays?"}, headers=account.headers
    )
    assert gemini.last_request("generateContent").model == "gemini-2.5-pro"

    async with get_sessionmaker()() as db:
        usage = {
            row.model: row
            for row in await db.scalars(select(TokenUsage).where(TokenUsage.bot_id == uuid.UUID(bot["id"])))
        }
    assert set(usage) == {"gemini-2.5-flash", "gemini-2.5-pro"}
    flash = usage["gemini-2.5-flash"]
    assert (flash.provider, flash.requests, str(flash.tenant_id)) == ("gemini", 2, account.tenant_id)
    assert flash.tokens_in > 0 and flash.tokens_out > 0


async def test_openai_compatible_provider_only_for_enterprise_bots_that_choose_it(
    client: httpx.AsyncClient,
    kb: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from control_plane.models import Bot
    from control_plane.settings import get_settings

    account, bot = kb["account"], kb["bot"]
    with FakeOpenAI(api_keys=["test-openai-key"]).serve() as server:
        fake = server.app
        settings = get_settings()
        monkeypatch.setattr(settings, "openai_compat_api_key", "test-openai-key")
        monkeypatch.setattr(settings, "openai_compat_base_url", fake.base_url)
        monkeypatch.setattr(settings, "openai_compat_model", "qwen-plus")
        fake.set_behaviour(Reply("Yakshanba kunlari ham yetkazamiz [S1]."))
        async with get_sessionmaker()() as db:
            await db.execute(update(Bot).where(Bot.id == uuid.UUID(bot["id"])).values(ai_provider="openai_compat"))
            await db.commit()
        # On the Free plan the choice does not apply: offline, like the runtime (its config offers no such provider).
        free = (await ask(client, kb, "Do you deliver on Sundays?")).json()
        assert "we deliver on Sundays from 10:00 to 16:00" in free["answer"]
        assert fake.requests == []
        async with get_sessionmaker()() as db:
            await db.execute(update(Tenant).where(Tenant.id == uuid.UUID(account.tenant_id)).values(plan="enterprise"))
            await db.commit()
        answered = (await ask(client, kb, "Do you deliver on Sundays?")).json()
        assert answered["answer"] == "Yakshanba kunlari ham yetkazamiz." and answered["fallback"] is False
        assert fake.last_request("chat.completions").body["model"] == "qwen-plus"
    async with get_sessionmaker()() as db:
        usage = list(await db.scalars(select(TokenUsage).where(TokenUsage.bot_id == uuid.UUID(bot["id"]))))
    assert [(row.provider, row.model, row.requests) for row in usage] == [("openai_compat", "qwen-plus", 1)]


# --------------------------------------------------------------------------------------------------------------
# Unanswered questions


async def _customer_messages(bot_id: str, tenant_id: str, texts: list[tuple[str, bool, int]]) -> None:
    """Messages as the runtime events would store them: (text, got the fallback, minutes ago)."""
    async with get_sessionmaker()() as db:
        tenant, bot = uuid.UUID(tenant_id), uuid.UUID(bot_id)
        customer = ChatUser(tenant_id=tenant, bot_id=bot, channel="telegram", external_id="42")
        db.add(customer)
        await db.flush()
        conversation = Conversation(tenant_id=tenant, bot_id=bot, chat_user_id=customer.id, channel="telegram")
        db.add(conversation)
        await db.flush()
        now = datetime.now(UTC)
        for text, fallback, minutes in texts:
            at = now - timedelta(minutes=minutes)
            common = {"tenant_id": tenant, "bot_id": bot, "conversation_id": conversation.id, "fallback": fallback}
            db.add(Message(**common, direction="in", text=text, created_at=at))
            db.add(Message(**common, direction="out", text="Sorry, I don't know.", created_at=at))
        await db.commit()


async def test_unanswered_questions_grouped_and_answered_in_one_click(
    client: httpx.AsyncClient, kb: dict[str, Any]
) -> None:
    account, bot = kb["account"], kb["bot"]
    await _customer_messages(
        bot["id"],
        account.tenant_id,
        [
            ("do you sell gift cards", True, 50),
            ("Do you sell GIFT cards?!", True, 40),
            ("Is there parking near the shop?", True, 30),
            ("Do you  sell gift cards?", True, 20),
            ("Do you deliver on Sundays?", False, 10),
        ],
    )
    url = f"/api/v1/bots/{bot['id']}/unanswered"
    listing = (await client.get(url, headers=account.headers)).json()
    assert listing["total"] == 2
    assert [(item["question"], item["count"]) for item in listing["items"]] == [
        ("Do you  sell gift cards?", 3),
        ("Is there parking near the shop?", 1),
    ]

    answer = {"question": "Do you sell gift cards?", "answer": "Yes, gift cards from 100 000 to 1 000 000 so'm."}
    response = await client.post(f"{url}/answer", json=answer, headers=account.headers)
    assert response.status_code == 202 and response.json()["status"] == "queued"
    source_id = response.json()["id"]
    await drain_jobs()
    asked = (await ask(client, kb, "Do you sell gift cards?")).json()
    assert asked["fallback"] is False and "gift cards from 100 000" in asked["answer"]
    assert asked["sources"][0]["source_id"] == source_id
    listing = (await client.get(url, headers=account.headers)).json()
    assert [item["question"] for item in listing["items"]] == ["Is there parking near the shop?"]

    # The next answer joins the same Q&A source.
    second = await client.post(
        f"{url}/answer",
        json={"question": "Is there parking near the shop?", "answer": "Yes, free parking behind the shop."},
        headers=account.headers,
    )
    assert second.json()["id"] == source_id
    await drain_jobs()
    async with get_sessionmaker()() as db:
        source = await db.get(KnowledgeSource, uuid.UUID(source_id))
    assert source is not None and source.kind == "faq" and len(source.options["items"]) == 2
    assert (await client.get(url, headers=account.headers)).json()["total"] == 0

    # A console question that got the fallback shows up too, and the page lists it with its answer form.
    await ask(client, kb, "Do you repair kettles?")
    browser = await sign_in_browser(account)
    page = await client.get(f"/en/bots/{bot['id']}/unanswered", headers={"Cookie": browser.cookie_header})
    assert page.status_code == 200
    assert "Do you repair kettles?" in page.text and f"/en/bots/{bot['id']}/unanswered/answer" in page.text
    posted = await client.post(
        f"/en/bots/{bot['id']}/unanswered/answer",
        data={"csrf_token": browser.csrf_token, "question": "Do you repair kettles?", "answer": "No, sorry."},
        headers={"Cookie": browser.cookie_header},
    )
    assert posted.status_code == 303 and posted.headers["location"].endswith("/unanswered?done=answered")
    assert await drain_jobs() == ["ready"]
    # The form sent twice changes nothing, so nothing is ingested twice.
    again = await client.post(
        f"/en/bots/{bot['id']}/unanswered/answer",
        data={"csrf_token": browser.csrf_token, "question": "Do you repair kettles?", "answer": "No, sorry."},
        headers={"Cookie": browser.cookie_header},
    )
    assert again.status_code == 303 and await drain_jobs() == []

    # A pair that another source already is: the page says so (409), it does not answer with JSON.
    knowledge = f"/api/v1/bots/{bot['id']}/knowledge"
    assert (await client.delete(f"{knowledge}/{source_id}", headers=account.headers)).status_code == 204
    other = {"items": [{"question": "Do you ship abroad?", "answer": "No."}]}
    assert (await client.post(f"{knowledge}/faq", json=other, headers=account.headers)).status_code == 202
    await drain_jobs()
    clash = await client.post(
        f"/en/bots/{bot['id']}/unanswered/answer",
        data={"csrf_token": browser.csrf_token, "question": "Do you ship abroad?", "answer": "No."},
        headers={"Cookie": browser.cookie_header, "Accept": "text/html"},
    )
    assert clash.status_code == 409 and clash.headers["content-type"].startswith("text/html")
    assert "alert" in clash.text
