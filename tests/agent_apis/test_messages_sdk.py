"""The real `anthropic` SDK against a real router whose backend speaks only Chat Completions:
every request and answer crosses the translation layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import pytest

from tests.agent_apis.conftest import API_KEY
from tests.conftest import RunningRouter, decision_rows
from tests.fakes.tool_chat import ToolChat

WEATHER = {"name": "get_weather", "description": "Weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture
async def api(agent_router: RunningRouter) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=agent_router.url, api_key=API_KEY,
                                        max_retries=0) as sdk:
        yield sdk


async def test_messages_create_answers_in_anthropic_shape_with_routing_headers(api, agent_router):
    raw = await api.messages.with_raw_response.create(
        model="auto", max_tokens=100, system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "Weather in Oslo?"}])
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "The weather in Oslo is mild."
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (17, 6)
    assert raw.headers["x-routed-backend"] == "3070" and raw.headers["x-request-id"]
    rows = await decision_rows(agent_router)
    assert rows[-1].endpoint == "/v1/messages" and rows[-1].status_code == 200
    assert rows[-1].client == "claude-code" and rows[-1].requested_model == "auto"


async def test_tool_use_round_trip_non_streaming(api, agent_router, tool_chat: ToolChat):
    first = await api.messages.create(
        model="auto", max_tokens=200, tools=[WEATHER], tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "Oslo", "n": 0} and call.id == "call_0"
    sent = tool_chat.requests[-1]
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["tool_choice"] == "auto"
    second = await api.messages.create(
        model="auto", max_tokens=200, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": [{"type": "text", "text": "12 C"}]}]}])
    assert second.stop_reason == "end_turn" and second.content[0].text.startswith("The weather")
    history = tool_chat.requests[-1]["messages"]
    assert history[-2]["tool_calls"][0]["id"] == "call_0"
    assert history[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "12 C"}


async def test_streaming_text_and_parallel_tool_calls(api, agent_router, tool_chat: ToolChat):
    tool_chat.calls = 2
    async with api.messages.stream(model="auto", max_tokens=200, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "Oslo twice"}]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.id, b.input) for b in final.content] == [
        ("tool_use", "call_0", {"city": "Oslo", "n": 0}),
        ("tool_use", "call_1", {"city": "Oslo", "n": 1})]
    assert final.usage.output_tokens == 6 and final.usage.input_tokens == 17
    async with api.messages.stream(model="auto", max_tokens=50,
                                   messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "The weather in Oslo is mild."
    rows = await decision_rows(agent_router)
    assert [(r.endpoint, r.stream, r.status_code) for r in rows[-2:]] == [
        ("/v1/messages", True, 200)] * 2


async def test_count_tokens_and_beta_query_string_and_x_api_key(api, agent_router):
    counted = await api.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hello " * 50}])
    assert 50 <= counted.input_tokens <= 70
    async with httpx.AsyncClient() as http:
        ok = await http.post(agent_router.url + "/v1/messages?beta=true",
                             headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
                             json={"model": "auto", "max_tokens": 10,
                                   "messages": [{"role": "user", "content": "hi"}]})
        bearer = await http.post(agent_router.url + "/v1/messages",
                                 headers={"Authorization": f"Bearer {API_KEY}"},
                                 json={"model": "auto", "max_tokens": 10,
                                       "messages": [{"role": "user", "content": "hi"}]})
        refused = await http.post(agent_router.url + "/v1/messages",
                                  headers={"x-api-key": "wrong"},
                                  json={"model": "auto", "max_tokens": 10,
                                        "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    assert bearer.status_code == 200
    assert refused.status_code == 401
    assert refused.json() == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": "Invalid API key."}}


async def test_force_big_tag_in_a_text_block_is_honoured_and_stripped(api, agent_router, tool_chat):
    await api.messages.create(
        model="auto", max_tokens=10,
        messages=[{"role": "user", "content": [{"type": "text", "text": "#force_big think"},
                                               {"type": "text", "text": "hard"}]}])
    rows = await decision_rows(agent_router)
    assert rows[-1].force_big is True
    sent = tool_chat.requests[-1]["messages"][-1]["content"]
    assert sent == [{"type": "text", "text": "think"}, {"type": "text", "text": "hard"}]
