"""The relay agent: installed through OpenCode's API when missing, else a 503 naming the fix.

A small fake OpenCode (real HTTP on loopback) stands in for the server; the real `opencode serve`
is exercised in tests/e2e/test_opencode_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from router.backends.base import UpstreamError
from router.backends.opencode import OpenCodeBackend
from router.backends.opencode_mapping import RELAY_AGENT, RELAY_PROMPT
from router.settings import Settings
from tests.helpers import serve_app

MODEL = "zai/glm-4.6"
BODY = {"model": MODEL, "messages": [{"role": "system", "content": "Be a pirate."},
                                     {"role": "user", "content": "hi"}]}


@dataclass
class FakeOpenCode:
    """Answers the catalog calls. `patch_status` is what PATCH /global/config answers;
    `applies` whether an accepted patch shows up in GET /agent. A PATCH is answered only once
    `hold_patch_until` GET /agent calls were made, so concurrent first requests all reach the
    install before the first one finishes."""

    patch_status: int = 200
    applies: bool = True
    agents: list[str] = field(default_factory=lambda: ["build", "plan"])
    patches: list[dict[str, Any]] = field(default_factory=list)
    sessions: int = 0
    hold_patch_until: int = 0
    agent_gets: int = 0
    _got: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def health(_: web.Request) -> web.Response:
            return web.json_response({"healthy": True})

        async def providers(_: web.Request) -> web.Response:
            return web.json_response({"providers": [
                {"id": "zai", "models": {"glm-4.6": {"limit": {"context": 1000}}}}]})

        async def agents(_: web.Request) -> web.Response:
            self.agent_gets += 1
            if self.agent_gets >= self.hold_patch_until:
                self._got.set()
            return web.json_response([{"name": name} for name in self.agents])

        app = web.Application()
        app.router.add_get("/global/health", health)
        app.router.add_get("/config/providers", providers)
        app.router.add_get("/agent", agents)
        app.router.add_patch("/global/config", self._patch)
        app.router.add_post("/session", self._session)
        return app

    async def _patch(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.patches.append(body)
        await asyncio.wait_for(self._got.wait(), 30)
        if self.patch_status != 200:
            return web.json_response({"name": "NotFound"}, status=self.patch_status)
        if self.applies:
            self.agents.extend(body.get("agent", {}))
        return web.json_response(body)

    async def _session(self, _: web.Request) -> web.Response:
        # Reaching here means the relay-agent gate let the request through.
        self.sessions += 1
        return web.json_response({"name": "UnknownError"}, status=500)


@pytest.fixture
async def backend_for() -> AsyncIterator[Any]:
    backends: list[OpenCodeBackend] = []

    def make(url: str) -> OpenCodeBackend:
        settings = Settings.from_env({"LOCAL_3070_URL": "", "OPENCODE_URL": url,
                                      "OPENCODE_API": "opencode", "OPENCODE_GLM_MODEL": MODEL})
        backend = OpenCodeBackend(settings)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.close()


async def send(backend: OpenCodeBackend) -> UpstreamError:
    with pytest.raises(UpstreamError) as err:
        await backend.send("/v1/chat/completions", BODY, stream=False, headers={})
    return err.value


async def test_missing_agent_is_installed_once_through_the_global_config(backend_for):
    fake = FakeOpenCode(hold_patch_until=3)
    async with serve_app(fake.app()) as url:
        backend = backend_for(url)
        errors = await asyncio.gather(*(send(backend) for _ in range(3)))
        report = await backend.check_health()
    assert len(fake.patches) == 1  # concurrent first requests share one install
    installed = fake.patches[0]["agent"][RELAY_AGENT]
    assert installed["prompt"] == RELAY_PROMPT and installed["tools"] == {"*": False}
    assert fake.sessions == 3  # past the gate, to the (failing) session call
    assert all("could not create a session" in e.message for e in errors)
    assert report.healthy


@pytest.mark.parametrize(("status", "applies", "why"), [
    (404, True, "PATCH /global/config answered HTTP 404"),
    (200, False, "GET /agent still does not list it"),
])
async def test_agent_that_cannot_be_installed_is_a_503_naming_the_fix(backend_for, status,
                                                                     applies, why):
    fake = FakeOpenCode(patch_status=status, applies=applies)
    async with serve_app(fake.app()) as url:
        backend = backend_for(url)
        first = await send(backend)
        second = await send(backend)
    for error in (first, second):
        assert error.status == 503 and error.retriable is False
        body = orjson.loads(error.body or b"{}")["error"]
        assert body["code"] == "relay_agent_missing" and body["type"] == "server_error"
        assert why in body["message"] and "deploy/opencode/opencode.json" in body["message"]
    assert fake.sessions == 0  # nothing relayed with OpenCode's coding-agent prompt
    assert len(fake.patches) == 1  # no second write within AGENT_INSTALL_INTERVAL


async def test_an_agent_the_user_already_has_is_left_alone(backend_for):
    fake = FakeOpenCode(agents=["build", RELAY_AGENT])
    async with serve_app(fake.app()) as url:
        backend = backend_for(url)
        error = await send(backend)
    assert fake.patches == [] and fake.sessions == 1
    assert "could not create a session" in error.message


async def test_an_agent_lost_later_is_installed_again(backend_for):
    """OpenCode restarted with a fresh home: the next catalog refresh installs the agent again."""
    fake = FakeOpenCode()
    async with serve_app(fake.app()) as url:
        backend = backend_for(url)
        assert (await backend.check_health()).healthy and len(fake.patches) == 1
        fake.agents.remove(RELAY_AGENT)
        assert (await backend.check_health()).healthy
        error = await send(backend)
    assert len(fake.patches) == 2 and RELAY_AGENT in fake.agents
    assert "could not create a session" in error.message
