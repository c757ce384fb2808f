"""The router in front of a real `opencode serve` whose providers are a local fake LLM.

One OpenCode process (and one fake provider, on its own thread and loop) serves the whole module;
every test gets a fresh router. Nothing leaves the machine: the providers point at loopback and
OpenCode's update, models.dev and share calls are switched off (see tests/e2e/opencode_env.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import free_port
from tests.e2e.opencode_env import RELAY_PROMPT, OpenCodeServer, ensure_opencode, relay_config
from tests.fakes.fake_llm_provider import COMPLETION_TOKENS, PROMPT_TOKENS, FakeLLMProvider

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

GLM = "fakezai/glm-fake"
CLAUDE = "fakeanthropic/claude-fake"


class ThreadedProvider:
    """The fake provider on its own event loop, so it outlives each test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeLLMProvider = self.call(FakeLLMProvider().start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeLLMProvider]:
    threaded = ThreadedProvider()
    yield threaded.fake
    threaded.stop()


@pytest.fixture(scope="module")
def opencode(provider: FakeLLMProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenCodeServer]:
    binary = ensure_opencode()
    server = OpenCodeServer(binary, tmp_path_factory.mktemp("opencode"), relay_config(provider.url))
    server.start(free_port())
    yield server
    server.stop()


@pytest.fixture
def fake(provider: FakeLLMProvider) -> FakeLLMProvider:
    provider.reset()
    return provider


def env_for(server: OpenCodeServer, **extra: str) -> dict[str, str]:
    return {"OPENCODE_URL": server.url, "OPENCODE_API": "opencode", "LOCAL_3070_URL": "",
            "OPENCODE_GLM_MODEL": GLM, "OPENCODE_CLAUDE_MODEL": CLAUDE, **extra}


@pytest.fixture
async def client(make_router, opencode, fake):
    router = await make_router(env_for(opencode))
    await router.service.registry.check_all()
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused",
                                  max_retries=0) as sdk:
        yield router, sdk


async def sessions(server: OpenCodeServer) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/session") as resp:
        return list(await resp.json())


async def no_sessions_left(server: OpenCodeServer, within: float = 10.0) -> bool:
    """Sessions are deleted when the answer is released (in the background after an error)."""
    deadline = asyncio.get_running_loop().time() + within
    while await sessions(server):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_non_streaming_glm_with_usage(client, fake, opencode):
    _, sdk = client
    raw = await sdk.chat.completions.with_raw_response.create(
        model="glm", messages=[{"role": "user", "content": "hello there"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert raw.headers["x-routed-backend"] == "opencode"
    assert raw.headers["x-routed-model"] == GLM
    # One provider call (no title generation), no tools, no coding-agent prompt.
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert not sent.get("tools")
    system = sent["messages"][0]["content"]
    assert system.startswith(RELAY_PROMPT)
    assert "opencode" not in system.lower().split("model id")[0]
    assert await no_sessions_left(opencode)


async def test_streaming_claude_through_anthropic_api(client, fake):
    _, sdk = client
    stream = await sdk.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "stream me please"}],
        stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "echo: stream me please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == COMPLETION_TOKENS
    assert fake.paths == ["/v1/messages"]


async def test_system_prompt_and_history_reach_the_model(client, fake):
    _, sdk = client
    completion = await sdk.chat.completions.create(model="opencode", messages=[
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Ahoy Ada"},
        {"role": "user", "content": "what is my name?"},
    ])
    assert completion.choices[0].message.content.endswith("what is my name?")
    sent = fake.requests[0]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].rstrip().endswith("You are a pirate.")
    user_text = str(sent[-1]["content"])
    assert "my name is Ada" in user_text and "Ahoy Ada" in user_text
    assert user_text.index("Ahoy Ada") < user_text.index("what is my name?")


async def test_provider_401_is_an_actionable_401(client, fake, opencode, monkeypatch):
    router, sdk = client
    fake.mode, fake.fail_status = "status", 401
    for alias in ("glm", "claude"):
        with pytest.raises(openai.AuthenticationError) as err:
            await sdk.chat.completions.create(model=alias,
                                              messages=[{"role": "user", "content": "hi"}])
        assert "opencode auth login" in err.value.message
    assert await no_sessions_left(opencode)
    # The expired login shows in /status and takes the backend out of rotation.
    await router.service.registry.check_all()
    await router.service.registry.check_all()
    backend = await opencode_status(router.url)
    assert backend["healthy"] is False
    assert "opencode auth login" in backend["last_error"]
    # Once the login works again, the next check's probe brings the backend back.
    fake.mode = "ok"
    monkeypatch.setattr("router.backends.opencode.AUTH_PROBE_INTERVAL", 0.0)
    await router.service.registry.check_all()
    backend = await opencode_status(router.url)
    assert backend["healthy"] is True and backend["last_error"] is None
    assert await no_sessions_left(opencode)


async def opencode_status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + "/status") as resp:
        status = await resp.json()
    return next(b for b in status["backends"] if b["name"] == "opencode")


async def test_provider_500_fails_fast_instead_of_retrying(client, fake, opencode):
    _, sdk = client
    fake.mode, fake.fail_status = "status", 500
    started = asyncio.get_running_loop().time()
    with pytest.raises(openai.APIStatusError) as err:
        await sdk.chat.completions.create(model="glm", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert "OpenCode started retrying" in err.value.message
    assert asyncio.get_running_loop().time() - started < 15
    fake.mode = "ok"


async def test_unknown_model_is_404(make_router, opencode, fake):
    router = await make_router(env_for(opencode, OPENCODE_CLAUDE_MODEL="fakeanthropic/nope"))
    await router.service.registry.check_all()
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused",
                                  max_retries=0) as sdk:
        with pytest.raises(openai.NotFoundError) as err:
            await sdk.chat.completions.create(model="claude",
                                              messages=[{"role": "user", "content": "hi"}])
    assert "OPENCODE_CLAUDE_MODEL" in err.value.message
    assert fake.requests == []


async def test_concurrent_requests_use_separate_sessions(client, fake, opencode):
    _, sdk = client
    fake.mode, fake.delay = "slow", 0.05
    prompts = [f"question number {i}" for i in range(4)]
    answers = await asyncio.gather(*(
        sdk.chat.completions.create(model="glm", messages=[{"role": "user", "content": p}])
        for p in prompts))
    assert [a.choices[0].message.content for a in answers] == [f"echo: {p}" for p in prompts]
    assert fake.max_in_flight > 1
    assert await no_sessions_left(opencode)


async def test_concurrency_limit_answers_429(make_router, opencode, fake):
    router = await make_router(env_for(opencode, OPENCODE_CONCURRENCY="1"))
    await router.service.registry.check_all()
    fake.mode, fake.delay = "slow", 0.3
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused",
                                  max_retries=0) as sdk:
        first = asyncio.ensure_future(sdk.chat.completions.create(
            model="glm", messages=[{"role": "user", "content": "slow one"}]))
        await asyncio.wait_for(_wait_for_request(fake), 30)
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.chat.completions.create(model="glm",
                                              messages=[{"role": "user", "content": "second"}])
        assert err.value.response.headers.get("retry-after")
        assert (await first).choices[0].message.content == "echo: slow one"


async def _wait_for_request(fake: FakeLLMProvider) -> None:
    while not fake.requests:
        await asyncio.sleep(0.02)
