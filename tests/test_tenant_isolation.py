"""Cross-tenant isolation, checked across the whole app rather than feature by feature.

Tenant A gets one object of every kind (through the API where one exists, as rows where none does yet). Then a
member of tenant B calls EVERY route of the app with A's real ids in the path, once with a Bearer token and once
with a browser cookie plus CSRF token, and must get 403 or 404 with none of A's data in the body. A route whose
path parameters have no substitution rule below, and that is not on the reviewed ALLOW_LIST, fails the test: a
new route is only accepted once somebody has decided how it is attacked.

Adding a route with a new id parameter: add the parameter to ``substitutions`` (creating A's object in
``tenant_a`` if it is a new kind). A route that is public on purpose goes on ALLOW_LIST with the reason.
A 422 from B means the route validated the body before checking access: authorize in a dependency instead (see
``control_plane.bots.auth``), so a foreign id is refused whatever the body.

Also here: every table with a tenant-owned meaning has a ``tenant_id`` (the platform-level tables are listed).
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import ForeignKey

from tests.control_plane.bots.helpers import image_bytes, sign_in_browser
from tests.factories import Account, make_account, make_bot

# --------------------------------------------------------------------------------------------------------------
# Tables

# Platform-level tables: rows that belong to no single tenant. Everything else must carry tenant_id.
PLATFORM_TABLES = {
    "users": "a person can belong to several tenants",
    "user_sessions": "sessions belong to a user, not a tenant",
    "email_tokens": "verification and reset tokens belong to a user",
    "outbox_emails": "mail to people, kept when no SMTP server is configured",
    "tenants": "the tenant itself",
    "broadcasts": "written by platform admins for many tenants (deliveries are per tenant)",
    "payment_events": "provider webhooks, stored before we know the tenant",
    "audit_log": "platform actions have no tenant; tenant actions do (nullable tenant_id)",
    "runtime_config_outbox": "keyed by tenant id without a foreign key: a deleted tenant's request must outlive it",
}
NULLABLE_TENANT_TABLES = {"audit_log"}
ALEMBIC_TABLES = {"alembic_version"}


def _tenant_fk(column: object) -> bool:
    return any(
        isinstance(fk, ForeignKey) and fk.target_fullname == "tenants.id" for fk in getattr(column, "foreign_keys", ())
    )


def test_every_tenant_owned_table_has_tenant_id() -> None:
    from control_plane.models import Base

    tables = {name: table for name, table in Base.metadata.tables.items() if name not in ALEMBIC_TABLES}
    assert set(PLATFORM_TABLES) <= set(tables), f"stale PLATFORM_TABLES: {set(PLATFORM_TABLES) - set(tables)}"
    problems = []
    for name, table in sorted(tables.items()):
        column = table.columns.get("tenant_id")
        if name in PLATFORM_TABLES and name not in NULLABLE_TENANT_TABLES:
            continue
        if column is None:
            problems.append(f"{name}: no tenant_id column (or add it to PLATFORM_TABLES with a reason)")
            continue
        if not _tenant_fk(column):
            problems.append(f"{name}.tenant_id: no foreign key to tenants.id")
        if column.nullable and name not in NULLABLE_TENANT_TABLES:
            problems.append(f"{name}.tenant_id: nullable")
        if not any(index.columns.keys()[:1] == ["tenant_id"] for index in table.indexes) and not any(
            list(constraint.columns.keys())[:1] == ["tenant_id"]
            for constraint in table.constraints
            if constraint.__class__.__name__ == "UniqueConstraint"
        ):
            problems.append(f"{name}.tenant_id: not indexed")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------------------
# Routes

# Reviewed exceptions: (method, path) → why tenant B may call it with A's values. "MOUNT" marks mounted apps.
ALLOW_LIST: dict[tuple[str, str], str] = {
    ("GET", "/bots/{public_id}/avatar"): "the widget's public image; the public id is published in the embed code",
    ("MOUNT", "/static"): "static assets (CSS, JS, images), no tenant data",
    # Shows every stored mail to anyone, by design of issue 2 §3; test_dev_outbox_is_gone_in_production below.
    ("GET", "/{lang}/dev/outbox"): "development-only mail viewer, a 404 in production",
    # The website widget is public by nature: every visitor of the customer's site talks to the bot by its public
    # id; the allowed-origins rule and per-visitor limits guard it (tests/control_plane/widget).
    ("OPTIONS", "/api/v1/widget/{public_id}/{action}"): "public website widget: CORS preflight",
    ("GET", "/api/v1/widget/{public_id}/config"): "public website widget: the look and welcome text",
    ("POST", "/api/v1/widget/{public_id}/messages"): "public website widget: a visitor's message",
    ("GET", "/api/v1/widget/{public_id}/history"): "public website widget: the visitor's own chat, by visitor id",
    ("GET", "/api/v1/widget/{public_id}/stream"): "public website widget: the visitor's own answers, by visitor id",
    # The runtimes console and tenant suspension address tenants by id across every tenant on purpose. Their
    # id-free routes (/api/v1/admin/runtimes, /api/v1/admin/hosts, /{lang}/admin/...) stay in the leak scan below.
    **dict.fromkeys(
        [
            ("GET", "/api/v1/admin/runtimes/{tenant_id}"),
            ("POST", "/api/v1/admin/runtimes/{tenant_id}/start"),
            ("POST", "/api/v1/admin/runtimes/{tenant_id}/stop"),
            ("POST", "/api/v1/admin/runtimes/{tenant_id}/restart"),
            ("GET", "/api/v1/admin/runtimes/{tenant_id}/logs"),
            ("GET", "/{lang}/admin/runtimes/{tenant_id}"),
            ("POST", "/{lang}/admin/runtimes/{tenant_id}/{command}"),
            ("POST", "/api/v1/admin/tenants/{tenant_id}/suspend"),
            ("POST", "/api/v1/admin/tenants/{tenant_id}/resume"),
            ("POST", "/{lang}/admin/tenants/{tenant_id}/{action}"),
        ],
        "platform admin only; non-admins get 403 (the GET page: the admin sign-in), tested in tests/admin_console",
    ),
}

PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class AppRoute:
    method: str
    path: str

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)


def _route_contexts(routes: list[object]) -> Iterator[tuple[str | None, set[str] | None, object]]:
    """(path, methods, route) for every route, looking inside routers included lazily by newer FastAPI versions."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        for route in routes:
            yield getattr(route, "path", None), getattr(route, "methods", None), route
        return
    for context in iter_route_contexts(routes):  # type: ignore[arg-type]
        yield context.path, context.methods, context.original_route


def app_routes(routes: list[object], prefix: str = "") -> list[AppRoute]:
    """Every (method, path) the app serves, mounted sub-apps included."""
    from starlette.routing import Mount, WebSocketRoute

    found: list[AppRoute] = []
    for path, methods, route in _route_contexts(routes):
        full = prefix + (path or "")
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner:
                found.extend(app_routes(list(inner), full))
            else:
                found.append(AppRoute("MOUNT", full))
        elif isinstance(route, WebSocketRoute):
            found.append(AppRoute("WEBSOCKET", full))
        else:
            # HEAD is added to every GET by the framework; OPTIONS routes (CORS preflights) are real routes.
            found.extend(AppRoute(method, full) for method in sorted((methods or set()) - {"HEAD"}))
    return found


@dataclass
class TenantA:
    """Tenant A's account, its objects' ids by path parameter name, and strings that must never reach B."""

    account: Account
    ids: dict[str, str]
    secrets: set[str] = field(default_factory=set)


def substitutions(a: TenantA) -> dict[str, str]:
    """Path parameter → the value tenant B sends: A's real ids (and a language for page routes)."""
    # index: a position inside A's object (a Q&A pair of a source); A's bot and source ids guard such routes.
    return {"lang": "en", "index": "0", **a.ids}


async def create_tenant_a(client: httpx.AsyncClient) -> TenantA:
    """One object of every kind in tenant A: through the API where it exists, as rows where it does not yet."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.kit.security import encrypt, fingerprint, token_hash
    from control_plane.models import (
        ApiKey,
        BotMember,
        Broadcast,
        BroadcastDelivery,
        ChannelConnection,
        ChatUser,
        Conversation,
        KnowledgeChunk,
        KnowledgeSource,
        Message,
        Notification,
        Payment,
        Subscription,
        TenantMember,
    )

    tag = "alpha" + secrets.token_hex(6)
    account = await make_account(client, email=f"{tag}@example.com")
    teammate = await make_account(client, email=f"{tag}-mate@example.com")
    bot = await make_bot(
        client,
        account,
        name=f"{tag} bot",
        description=f"{tag} description",
        instructions=f"{tag} instructions",
        welcome_message=f"{tag} welcome",
        allowed_origins=[f"https://{tag}.example"],
    )
    avatar = await client.put(
        f"/api/v1/bots/{bot['id']}/avatar",
        files={"file": ("a.png", image_bytes(), "image/png")},
        headers=account.headers,
    )
    assert avatar.status_code == 200, avatar.text
    tenant_id = uuid.UUID(account.tenant_id)
    bot_id = uuid.UUID(bot["id"])
    telegram_token = f"123456:{tag}-telegram-token"

    async with get_sessionmaker()() as db:
        connection = ChannelConnection(
            tenant_id=tenant_id,
            bot_id=bot_id,
            kind="telegram",
            # The shape channels.service.stored_token reads.
            credentials_encrypted=encrypt(json.dumps({"token": telegram_token})),
            credential_fingerprint=fingerprint(telegram_token, purpose="telegram"),
            external_id=f"{tag}-tg-id",
            display_name=f"{tag} channel",
        )
        source = KnowledgeSource(tenant_id=tenant_id, bot_id=bot_id, kind="text", title=f"{tag} source", status="ready")
        chat_user = ChatUser(tenant_id=tenant_id, bot_id=bot_id, channel="telegram", external_id=f"{tag}-customer")
        chat_user.name = f"{tag} customer"
        api_key = ApiKey(tenant_id=tenant_id, name=f"{tag} key", prefix="bf_" + tag[:8], key_hash=token_hash(tag))
        broadcast = Broadcast(html=f"<p>{tag} broadcast</p>")
        subscription = Subscription(tenant_id=tenant_id, plan="business", status="active")
        db.add_all([connection, source, chat_user, api_key, broadcast, subscription])
        await db.flush()
        chunk = KnowledgeChunk(
            tenant_id=tenant_id, bot_id=bot_id, source_id=source.id, text=f"{tag} chunk text", title=f"{tag} chunk"
        )
        conversation = Conversation(tenant_id=tenant_id, bot_id=bot_id, chat_user_id=chat_user.id, channel="telegram")
        delivery = BroadcastDelivery(
            tenant_id=tenant_id, broadcast_id=broadcast.id, bot_id=bot_id, chat_user_id=chat_user.id
        )
        payment = Payment(
            tenant_id=tenant_id,
            subscription_id=subscription.id,
            provider="stripe",
            provider_payment_id=f"{tag}-payment",
            plan="business",
            amount_minor=4900,
            currency="USD",
            status="paid",
        )
        notification = Notification(tenant_id=tenant_id, kind="trial.reminder", dedupe_key=f"{tag}-notice")
        member = TenantMember(tenant_id=tenant_id, user_id=uuid.UUID(str(teammate.me["id"])), role="viewer")
        bot_member = BotMember(
            tenant_id=tenant_id, bot_id=bot_id, user_id=uuid.UUID(str(teammate.me["id"])), role="editor"
        )
        db.add_all([chunk, conversation, delivery, payment, notification, member, bot_member])
        await db.flush()
        message = Message(
            tenant_id=tenant_id,
            bot_id=bot_id,
            conversation_id=conversation.id,
            direction="in",
            text=f"{tag} message text",
            created_at=datetime.now(UTC),
        )
        db.add(message)
        await db.commit()

    ids = {
        "id": bot["id"],
        "bot_id": bot["id"],
        "connection_id": str(connection.id),
        "channel_id": str(connection.id),
        "source_id": str(source.id),
        "chunk_id": str(chunk.id),
        "chat_user_id": str(chat_user.id),
        "conversation_id": str(conversation.id),
        "message_id": str(message.id),
        "api_key_id": str(api_key.id),
        "key_id": str(api_key.id),
        "broadcast_id": str(broadcast.id),
        "delivery_id": str(delivery.id),
        "subscription_id": str(subscription.id),
        "payment_id": str(payment.id),
        "notification_id": str(notification.id),
        "member_id": str(member.id),
        "bot_member_id": str(bot_member.id),
        "user_id": str(account.me["id"]),
        "tenant_id": account.tenant_id,
    }
    leaks = {
        tag,  # every text above contains it: names, titles, chunk and message texts, emails, origins
        bot["public_id"],
        telegram_token,
    }
    return TenantA(account=account, ids=ids, secrets=leaks)


def request_for(route: AppRoute, values: dict[str, str]) -> str:
    return PARAM.sub(lambda match: values[match.group(1)], route.path)


async def call(
    client: httpx.AsyncClient, route: AppRoute, url: str, headers: dict[str, str], csrf_token: str | None
) -> httpx.Response:
    """Call a route the way its clients do: JSON for the API, a form (with the CSRF token) for pages."""
    if not url.startswith("/api/"):
        headers = {**headers, "Accept": "text/html"}  # pages answer browsers with HTML error pages
    kwargs: dict[str, object] = {"headers": headers}
    if route.method not in SAFE_METHODS:
        if url.startswith("/api/"):
            kwargs["json"] = {}
        else:
            kwargs["data"] = {"csrf_token": csrf_token} if csrf_token else {}
    return await client.request(route.method, url, **kwargs)  # type: ignore[arg-type]


def leaked(response: httpx.Response, a: TenantA, url: str) -> list[str]:
    """A's secrets and ids in the body; ids B itself sent in the URL may be echoed (a 404 page links back)."""
    body = response.text
    found = [secret for secret in a.secrets if secret in body]
    found += [value for value in set(a.ids.values()) if value not in url and value in body]
    return found


@pytest.fixture
async def world(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> tuple[TenantA, Account, dict[str, str]]:
    from control_plane.settings import get_settings

    # Routes that ask a messenger about A's connection get a refused connection at once, never the real service.
    monkeypatch.setattr(get_settings(), "telegram_api_base_url", "http://127.0.0.1:9")
    monkeypatch.setattr(get_settings(), "graph_api_base_url", "http://127.0.0.1:9")
    a = await create_tenant_a(client)
    b = await make_account(client, email=f"bravo{secrets.token_hex(4)}@example.com")
    b_bot = await make_bot(client, b, name="Bravo bot")
    return a, b, {"bot_id": b_bot["id"], "id": b_bot["id"]}


def classify(routes: list[AppRoute], rules: dict[str, str]) -> tuple[list[AppRoute], list[AppRoute], list[str]]:
    """(routes with ids to attack, id-free routes to scan for leaks, routes nobody reviewed)."""
    with_ids, without_ids, unreviewed = [], [], []
    for route in routes:
        if (route.method, route.path) in ALLOW_LIST:
            continue
        if route.method in ("MOUNT", "WEBSOCKET") or any(param not in rules for param in route.params):
            unreviewed.append(f"{route.method} {route.path}")
        elif [param for param in route.params if param not in ("lang", "index")]:
            with_ids.append(route)
        else:
            without_ids.append(route)
    return with_ids, without_ids, unreviewed


async def test_every_route_is_covered_or_allow_listed(app, world) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ = world
    routes = app_routes(list(app.routes))
    served = {(route.method, route.path) for route in routes}
    stale = [key for key in ALLOW_LIST if key not in served]
    assert not stale, f"ALLOW_LIST names routes that no longer exist: {stale}"
    _, _, unreviewed = classify(routes, substitutions(a))
    assert not unreviewed, (
        "Routes without a tenant-isolation rule (add their path parameters to substitutions() in "
        "tests/test_tenant_isolation.py, or put them on ALLOW_LIST with a reason):\n  " + "\n  ".join(unreviewed)
    )


async def test_tenant_a_reaches_its_objects(app, client: httpx.AsyncClient, world) -> None:  # type: ignore[no-untyped-def]
    """The ids are real: A itself gets 200 from every read route they are used in, so B's 404s mean isolation."""
    a, _b, _ = world
    rules = substitutions(a)
    with_ids, _, _ = classify(app_routes(list(app.routes)), rules)
    reads = [route for route in with_ids if route.method == "GET"]
    assert reads, "no read route takes an id"
    failures = []
    for route in reads:
        url = request_for(route, rules)
        response = await client.get(url, headers=a.account.headers)
        if response.status_code != 200:
            failures.append(f"{route.method} {route.path} → {response.status_code}")
    assert not failures, "tenant A cannot reach its own objects:\n  " + "\n  ".join(failures)


async def test_tenant_b_cannot_reach_tenant_a(app, client: httpx.AsyncClient, world) -> None:  # type: ignore[no-untyped-def]
    a, b, b_own = world
    rules = substitutions(a)
    with_ids, without_ids, _ = classify(app_routes(list(app.routes)), rules)
    failures: list[str] = []

    async def attempt(route: AppRoute, url: str, *, expect_denied: bool) -> None:
        modes: list[tuple[str, dict[str, str], str | None]] = [("bearer", b.headers, None)]
        # A fresh browser session per call: an id-free route may be "sign out", which must not end the test's
        # session for the routes after it.
        browser = await sign_in_browser(b)
        modes.append(("cookie", browser.headers(unsafe=route.method not in SAFE_METHODS), browser.csrf_token))
        for mode, headers, csrf_token in modes:
            where = f"{route.method} {url} ({mode})"
            try:
                response = await call(client, route, url, headers, csrf_token)
            except Exception as exc:  # the test client re-raises what the app did not handle
                failures.append(f"{where} → raised {exc!r}")
                continue
            if response.status_code >= 500:
                failures.append(f"{where} → {response.status_code}")
            elif expect_denied and response.status_code not in (403, 404):
                failures.append(f"{where} → {response.status_code}, expected 403 or 404")
            if found := leaked(response, a, url):
                failures.append(f"{where} → body contains tenant A's data: {found}")

    # Deletions last, so that if one wrongly succeeds the other routes are still tried on A's live objects.
    for route in sorted(with_ids, key=lambda route: route.method == "DELETE"):
        await attempt(route, request_for(route, rules), expect_denied=True)
        # The classic mix-up: B's own bot in the path with A's child object (the route must check they belong).
        if "bot_id" in route.params and set(route.params) - {"bot_id", "lang"}:
            await attempt(route, request_for(route, {**rules, **b_own}), expect_denied=True)
    for route in without_ids:
        await attempt(route, request_for(route, rules), expect_denied=False)
    assert not failures, "cross-tenant access:\n  " + "\n  ".join(failures)


async def test_tenant_header_cannot_switch_into_another_tenant(client: httpx.AsyncClient, world) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = world
    headers = {**b.headers, "X-Tenant-Id": a.account.tenant_id}
    for url in ("/api/v1/bots", f"/api/v1/bots/{a.ids['bot_id']}"):
        response = await client.get(url, headers=headers)
        assert response.status_code == 403, url
        assert not leaked(response, a, url)


async def test_dev_outbox_is_gone_in_production(
    client: httpx.AsyncClient, world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The one allow-listed route that shows other tenants' data (mail) must not exist in production."""
    from control_plane.settings import get_settings

    a, b, _ = world
    monkeypatch.setattr(get_settings(), "environment", "production")
    response = await client.get("/en/dev/outbox", headers=b.headers)
    assert response.status_code == 404
    assert not leaked(response, a, "/en/dev/outbox")
