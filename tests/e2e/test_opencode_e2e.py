"""The router in front of a real `opencode serve` whose providers are a local fake LLM.

One OpenCode process (and one fake provider, on its own thread and loop) serves the whole module;
every test gets a fresh router. OpenCode's config names only the providers, as a user's would:
nobody added the router's relay agent, the router installs it through OpenCode's API. Nothing
leaves the machine: the providers point at loopback and OpenCode's update, models.dev and share
calls are switched off (see tests/e2e/opencode_env.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from router.backends.opencode_mapping import RELAY_AGENT, RELAY_PROMPT
from tests.e2e.opencode_env import OpenCodeServer, ensure_opencode, relay_config
from tests.fakes.fake_llm_provider import COMPLETION_TOKENS, PROMPT_TOKENS, FakeLLMProvider
from tests.helpers import eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

GLM = "fakezai/glm-fake"
CLAUDE = "fakeanthropic/claude-fake"
OPENCODE_PROMPT = "You are opencode"  # how OpenCode's own coding-agent prompt begins


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


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.json()


async def sessions(server: OpenCodeServer) -> list[dict[str, Any]]:
    return list(await get_json(server.url + "/session"))


async def no_sessions_left(server: OpenCodeServer) -> bool:
    """Sessions are deleted when the answer is released (in the background after an error)."""
    async def empty() -> bool:
        return not await sessions(server)
    return await eventually(empty, timeout=30, interval=0.05)


async def test_unedited_config_gets_the_relay_agent_and_the_clients_system_prompt(
        client, fake, opencode):
    """The defect: with no relay agent, OpenCode sent its ~9,600-character coding prompt."""
    assert "agent" not in opencode.config  # nobody edited OpenCode's config for the router
    _, sdk = client
    raw = await sdk.chat.completions.with_raw_response.create(model="glm", messages=[
        {"role": "system", "content": "You are a terse librarian."},
        {"role": "user", "content": "recommend a book"}])
    assert raw.parse().choices[0].message.content == "echo: recommend a book"
    assert raw.http_response.json()["choices"][0]["message"]["refusal"] is None
    agents = await get_json(opencode.url + "/agent")
    assert RELAY_AGENT in [a["name"] for a in agents]
    [sent] = fake.chat_requests()
    system = "\n".join(str(m["content"]) for m in sent["messages"] if m["role"] == "system")
    assert system.startswith(RELAY_PROMPT)
    assert "You are a terse librarian." in system
    assert OPENCODE_PROMPT not in system and len(system) < 2000
    assert not sent.get("tools")


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
    assert OPENCODE_PROMPT not in system
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
    with pytest.raises(openai.APIStatusError) as err:
        await sdk.chat.completions.create(model="glm", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert "OpenCode started retrying" in err.value.message
    # The router aborted at OpenCode's first retry notice: its retry (seconds later) never came.
    assert await no_sessions_left(opencode)
    assert len(fake.chat_requests()) == 1
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
        await eventually(lambda: fake.requests, timeout=30, what="the provider got the request")
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.chat.completions.create(model="glm",
                                              messages=[{"role": "user", "content": "second"}])
        assert err.value.response.headers.get("retry-after")
        assert (await first).choices[0].message.content == "echo: slow one"



@pytest.fixture(scope="module")
def opencode_without_agent(provider: FakeLLMProvider,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenCodeServer]:
    """An OpenCode whose project config disables the relay agent: the install cannot take."""
    config = relay_config(provider.url, **{RELAY_AGENT: {"disable": True}})
    server = OpenCodeServer(ensure_opencode(), tmp_path_factory.mktemp("opencode-noagent"), config)
    server.start(free_port())
    yield server
    server.stop()


async def test_refuses_with_503_rather_than_leak_the_coding_prompt(make_router, fake,
                                                                  opencode_without_agent):
    router = await make_router(env_for(opencode_without_agent))
    await router.service.registry.check_all()
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused",
                                  max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.chat.completions.create(model="glm", messages=[
                {"role": "user", "content": "never-relayed"}])
    assert err.value.status_code == 503
    assert RELAY_AGENT in err.value.message and "deploy/opencode/opencode.json" in err.value.message
    assert "PATCH /global/config" in err.value.message
    # Nothing was relayed with OpenCode's prompt. (A unique text: the other OpenCode server of
    # this module may still send a provider retry of an earlier test's request meanwhile.)
    assert not [r for r in fake.requests if "never-relayed" in str(r.get("messages"))]
    assert await no_sessions_left(opencode_without_agent)


async def test_the_opencode_kind_from_a_home_lab_file(make_router, opencode, fake, tmp_path):
    """The same server declared in a home-lab file, under another name and with its own model
    hints and label: routed by an alias, and a request with tools is kept away from it."""
    lab = tmp_path / "lab.toml"
    lab.write_text(f"""
[backends.subscription]
kind = "opencode"
url = "{opencode.url}"
label = "GLM plan"
model_hints = {{ glm = "{GLM}" }}

[aliases]
plan = "subscription:glm"
""")
    router = await make_router({"ROUTER_CONFIG": str(lab)})
    await router.service.registry.check_all()
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused",
                                  max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="plan", messages=[{"role": "user", "content": "hello lab"}])
        assert raw.parse().choices[0].message.content == "echo: hello lab"
        assert (raw.headers["x-routed-backend"], raw.headers["x-routed-model"]) == (
            "subscription", GLM)
        decision = await router.service.plan("/v1/chat/completions", {
            "model": "plan", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
    assert decision.decision.backend is None
    assert decision.decision.skipped == {
        "subscription": "cannot run the client's tools (an OpenCode session)"}
    status = router.service.status()
    assert [(b["name"], b["label"], b["kind"]) for b in status["backends"]] == [
        ("subscription", "GLM plan", "opencode")]
