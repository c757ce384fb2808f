"""The `anthropic` backend kind against a fake Anthropic server, through a real router: Messages
pass through natively, Chat and Responses requests are translated to Messages, and a refused
key (401) or an overloaded Anthropic (529) falls back to the next backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import RouterFactory, RunningRouter, decision_rows
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.tool_chat import ToolChat

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
async def claude_router(make_router: RouterFactory, fake_anthropic: FakeAnthropic,
                        tool_chat: ToolChat, tmp_path: Path) -> RunningRouter:
    config = tmp_path / "router.toml"
    config.write_text(f"""
[backends.claude]
kind = "anthropic"
url = "{fake_anthropic.url}"
api_key = "{fake_anthropic.api_key}"

[backends.local]
kind = "openai"
url = "{tool_chat.url}"

[aliases]
"claude-*" = "claude"
""")
    return await make_router({"ROUTER_CONFIG": str(config)})


@pytest.fixture
async def sdks(claude_router: RunningRouter) -> AsyncIterator[tuple[anthropic.AsyncAnthropic,
                                                                    openai.AsyncOpenAI]]:
    async with anthropic.AsyncAnthropic(base_url=claude_router.url, api_key="x",
                                        max_retries=0) as claude, \
            openai.AsyncOpenAI(base_url=claude_router.url + "/v1", api_key="x",
                               max_retries=0) as oai:
        yield claude, oai


async def test_messages_pass_through_natively(sdks, claude_router, fake_anthropic):
    claude, _ = sdks
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "metadata": {"user_id": "u1"},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]}
    message = await claude.messages.create(**body)
    assert message.content[0].text == "Hello from fake Claude."
    assert fake_anthropic.requests[-1] == body  # untouched, cache_control and metadata included
    assert fake_anthropic.headers[-1]["anthropic-version"] == "2023-06-01"
    async with claude.messages.stream(**body) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "Hello from fake Claude."
    rows = await decision_rows(claude_router)
    assert [(r.backend, r.status_code, r.endpoint) for r in rows[-2:]] == [
        ("claude", 200, "/v1/messages")] * 2
    # Usage is read off Anthropic's own answer, whole and streamed.
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows[-2:]] == [(21, 9)] * 2


async def test_the_clients_beta_header_reaches_a_native_backend_but_not_its_key(
        sdks, fake_anthropic):
    claude, _ = sdks
    await claude.messages.create(model="claude-sonnet-4-5", max_tokens=20,
                                 messages=[{"role": "user", "content": "hi"}],
                                 extra_headers={"anthropic-beta": "context-management-2025-06-27"})
    sent = fake_anthropic.headers[-1]
    assert sent["anthropic-beta"] == "context-management-2025-06-27"
    assert sent["x-api-key"] == fake_anthropic.api_key  # the operator's key, not the client's "x"


async def test_chat_requests_are_translated_to_messages(sdks, fake_anthropic):
    _, oai = sdks
    answer = await oai.chat.completions.create(
        model="claude-sonnet-4-5", tools=[WEATHER], max_tokens=64,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Oslo?"}])
    sent = fake_anthropic.requests[-1]
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 64
    assert sent["tools"][0]["name"] == "get_weather" and "input_schema" in sent["tools"][0]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].id == "toolu_fake1"
    assert choice.message.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert answer.usage.prompt_tokens == 21
    stream = await oai.chat.completions.create(
        model="claude-sonnet-4-5", tools=[WEATHER], stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Oslo?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "toolu_fake1", "type": "function",
                       "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
                  {"role": "tool", "tool_call_id": "toolu_fake1", "content": "12 C"}])
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake Claude."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert fake_anthropic.requests[-1]["messages"][-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_fake1", "content": "12 C"}]}


async def test_responses_requests_reach_claude(sdks, fake_anthropic):
    _, oai = sdks
    response = await oai.responses.create(model="claude-sonnet-4-5", input="hi", store=False)
    assert response.output_text == "Hello from fake Claude."
    assert fake_anthropic.requests[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize(("status", "said"), [(401, "ANTHROPIC_API_KEY"), (529, "overloaded")])
async def test_refused_key_and_overload_fall_back(sdks, claude_router, fake_anthropic,
                                                  tool_chat, status, said):
    claude, oai = sdks
    fake_anthropic.fail_status = status
    raw = await claude.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-routed-backend"] == "local"
    assert (await raw.parse()).content[0].text == tool_chat.text
    chat = await oai.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert chat.headers["x-routed-backend"] == "local"
    rows = await decision_rows(claude_router)
    for row in rows[-2:]:
        assert row.backend == "local" and row.status_code == 200 and row.fallback_attempts == 1
        assert said in row.failures
