"""Fixtures for the inference agent tests (helpers live in inference_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from inference.app import create_app
from inference.config import HostConfig
from inference.settings import Settings
from tests.inference.inference_helpers import Agent, AgentFactory, PlainServer, make_config


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", start_timeout=15.0, stop_grace=2.0,
                    idle_shutdown_minutes=10.0)


@pytest.fixture
async def start_agent(settings: Settings) -> AsyncIterator[AgentFactory]:
    """Start agents with `await start_agent(config, **settings_overrides)`; all stop at teardown."""
    running: list[Agent] = []

    async def start(config: HostConfig | None = None, handler_cancellation: bool = True,
                    **overrides: Any) -> Agent:
        """`handler_cancellation` as `web.run_app` gets it (the CLI passes True)."""
        app = create_app(replace(settings, **overrides), config or make_config())
        server: TestServer | PlainServer = (
            TestServer(app, host="127.0.0.1") if handler_cancellation else PlainServer(app))
        await server.start_server()
        agent = Agent(server, aiohttp.ClientSession())
        running.append(agent)
        return agent

    yield start
    for agent in running:
        await agent.session.close()
        await agent.server.close()

