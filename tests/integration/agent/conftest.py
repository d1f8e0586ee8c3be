"""Fixtures for the agent's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agent_fake_broker import FakeBroker


@pytest.fixture
async def broker() -> AsyncIterator[FakeBroker]:
    fake = FakeBroker()
    await fake.start()
    yield fake
    if fake.serving:
        await fake.stop()
