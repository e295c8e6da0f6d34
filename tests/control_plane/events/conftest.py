"""Fixtures for the events tests: a tenant with two bots (direct inserts) and a decoded Redis client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.control_plane.events.helpers import World, make_world


@pytest.fixture
async def world() -> World:
    return await make_world()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    await client.aclose()
