"""Fixtures for the agent APIs: a tool-using Chat model behind a real router on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import RouterFactory, RunningRouter
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.tool_chat import ToolChat

API_KEY = "agent-key-1"


@pytest.fixture
async def tool_chat() -> AsyncIterator[ToolChat]:
    fake = await ToolChat().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = await FakeAnthropic().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def agent_router(make_router: RouterFactory, tool_chat: ToolChat) -> RunningRouter:
    """A router whose only backend is the tool-using chat model, with one API key."""
    return await make_router({"LOCAL_3070_URL": tool_chat.url,
                              "ROUTER_API_KEYS": f"claude-code:{API_KEY}"})
