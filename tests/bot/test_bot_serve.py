"""The bot over HTTPS/WSS, and `local-ai-router serve` as a real process with the bot enabled."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.reports import GAMING_ON
from tests.bot.bot_helpers import start_bot
from tests.bot.mattermost_helpers import BOT_TOKEN, World
from tests.conftest import RouterFactory
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually, free_port

CLI = Path(sys.executable).with_name("local-ai-router")


async def test_bot_over_https_and_wss_with_private_ca(
        tls_world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    w = await start_bot(tls_world, upstreams, make_router)
    assert w.server.url.startswith("https://")
    assert w.plugin.config.ca_file == w.server.ca_file  # taken from SSL_CERT_FILE
    post = w.say(w.world.alice, "@aibot gaming mode on")
    assert (await w.reply(post))["message"] == GAMING_ON
    post = w.say(w.bob, "@aibot hello over TLS")
    assert "Answered by 3070" in (await w.reply(post, "Answered by"))["message"]


async def _until_healthy(url: str, proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """Poll the router's liveness endpoint (a separate process has no event to wait on)."""
    async def healthy() -> bool:
        assert proc.returncode is None, "local-ai-router serve exited early"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{url}/health")).status_code == 200
        except httpx.TransportError:
            return False
    await eventually(healthy, timeout=timeout, interval=0.1, what="serve is healthy")


async def _chat(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{url}/v1/chat/completions", json={
            "model": "auto", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
async def serve(tmp_path: Path, world: World, upstreams: dict[str, FakeUpstream],
                ) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    ops = world.server.add_channel("ops")
    assert ops.name == "ops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTERMOST_", "ROUTER_"))}
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp_path}/router.db", "LOCAL_3070_URL": upstreams["3070"].url,
        "ROUTER_PORT": str(port), "HEALTH_CHECK_INTERVAL": "3600", "LOG_LEVEL": "INFO",
        "MATTERMOST_URL": world.server.url, "MATTERMOST_TOKEN": BOT_TOKEN,
        "MATTERMOST_TEAM": "home", "MATTERMOST_CHANNEL": "ops", "MATTERMOST_ADMINS": "alice",
    })
    log = open(tmp_path / "serve.log", "wb")  # noqa: ASYNC230, SIM115 - tiny, closed below
    await world.server.refuse_connections()  # Mattermost is down when the router starts
    proc = await asyncio.create_subprocess_exec(str(CLI), "serve", env=env, stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def test_serve_runs_the_bot_and_serves_v1_while_mattermost_is_down(
        serve: tuple[str, asyncio.subprocess.Process], world: World, tmp_path: Path) -> None:
    url, proc = serve
    await _until_healthy(url, proc)
    assert (await _chat(url)).status_code == 200  # Mattermost down: /v1 still serves

    await world.server.accept_connections()  # Mattermost comes up: the bot logs in and listens
    await world.server.wait_for_sessions(1, timeout=30)
    assert not [p for p in world.server.posts.values() if p["user_id"] == world.bot.id]
    post = world.server.inject_post(world.alice, world.town, "@aibot gaming status")
    reply = await world.server.wait_for_post(
        lambda p: p["user_id"] == world.bot.id and p["root_id"] == post["id"], timeout=10)
    assert reply["message"].startswith("Gaming mode: OFF\n3070: Available")

    await world.server.refuse_connections()  # down again
    response = await _chat(url)
    assert response.status_code == 200
    assert response.headers["X-Routed-Backend"] == "3070"

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "Mattermost login failed" in log and "Traceback" not in log
