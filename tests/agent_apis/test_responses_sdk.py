"""The real `openai` SDK's Responses API against a real router whose backend speaks only Chat
Completions (as Codex CLI uses it: `store: false`, function tools, streaming)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.agent_apis.conftest import API_KEY
from tests.conftest import RunningRouter, decision_rows
from tests.fakes.tool_chat import ToolChat

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}, "strict": False}


@pytest.fixture
async def api(agent_router: RunningRouter) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=agent_router.url + "/v1", api_key=API_KEY,
                                  max_retries=0) as sdk:
        yield sdk


async def test_create_text_answer(api, agent_router):
    raw = await api.responses.with_raw_response.create(
        model="auto", instructions="Be brief.", input="Weather in Oslo?", store=False)
    response = raw.parse()
    assert response.status == "completed" and response.object == "response"
    assert response.output_text == "The weather in Oslo is mild."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.total_tokens) == (17, 6, 23)
    assert raw.headers["x-routed-backend"] == "3070"
    rows = await decision_rows(agent_router)
    assert (rows[-1].endpoint, rows[-1].status_code, rows[-1].client) == (
        "/v1/responses", 200, "claude-code")


async def test_function_call_round_trip(api, tool_chat: ToolChat):
    first = await api.responses.create(model="auto", input="Weather in Oslo?", tools=[WEATHER],
                                       store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, c.call_id, c.arguments) for c in calls] == [
        ("get_weather", "call_0", '{"city": "Oslo", "n": 0}')]
    assert tool_chat.requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    second = await api.responses.create(
        model="auto", tools=[WEATHER], store=False,
        input=[{"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
               {"type": "function_call", "call_id": "call_0", "name": "get_weather",
                "arguments": calls[0].arguments},
               {"type": "function_call_output", "call_id": "call_0", "output": "12 C"}])
    assert second.output_text.startswith("The weather")
    history = tool_chat.requests[-1]["messages"]
    assert history[-2]["tool_calls"][0]["id"] == "call_0"
    assert history[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "12 C"}


async def test_stream_with_parallel_function_calls(api, tool_chat: ToolChat):
    tool_chat.calls = 2
    async with api.responses.stream(model="auto", input="Oslo twice", tools=[WEATHER],
                                    store=False) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.function_call_arguments.done") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [
        ("call_0", '{"city": "Oslo", "n": 0}'), ("call_1", '{"city": "Oslo", "n": 1}')]
    assert final.usage is not None and final.usage.output_tokens == 6


async def test_stream_text(api):
    async with api.responses.stream(model="auto", input="hi", store=False) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "The weather in Oslo is mild."


async def test_stateful_requests_are_refused_with_the_reason(api, agent_router):
    with pytest.raises(openai.BadRequestError) as refused:
        await api.responses.create(model="auto", input="hi", previous_response_id="resp_1")
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "stateless" in refused.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as stored:
        await api.responses.create(model="auto", input="hi", store=True)
    assert stored.value.body["param"] == "store"  # type: ignore[index]
    rows = await decision_rows(agent_router)
    assert [(r.endpoint, r.status_code) for r in rows[-2:]] == [("/v1/responses", 400)] * 2
