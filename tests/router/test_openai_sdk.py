"""The router through the real openai SDK: chat, streaming, usage, pass-through, typed errors."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import backend_env, decision_rows

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}}}}


@pytest.fixture
async def sdk(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0) as client:
        yield router, client


async def test_non_streaming_chat(sdk, upstreams):
    router, client = sdk
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], extra_headers={"X-Request-ID": "abc123"})
    completion = raw.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert completion.usage.completion_tokens == 5
    assert raw.headers["x-request-id"] == "abc123"
    assert raw.headers["x-routed-model"] == "qwen2.5-7b-instruct-awq"
    await router.service.decisions.flush()
    assert router.service.decisions.written == 1


async def test_streaming_without_usage(sdk):
    _, client = sdk
    stream = await client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hello"}], stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert all(c.usage is None for c in chunks)


async def test_streaming_with_usage(sdk, upstreams):
    router, client = sdk
    stream = await client.chat.completions.create(
        model="medium", messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert upstreams["3090"].requests[0]["stream_options"] == {"include_usage": True}
    [row] = await decision_rows(router)
    assert (row.backend, row.reason, row.stream, row.status_code) == ("3090", "explicit_model", True, 200)
    assert (row.prompt_tokens, row.completion_tokens) == (11, 5)
    assert row.ttft_ms is not None and row.latency_ms >= row.ttft_ms


async def test_tools_and_response_format_pass_through_untouched(sdk, upstreams):
    _, client = sdk
    messages = [{"role": "user", "content": "weather in Oslo?"}]
    completion = await client.chat.completions.create(
        model="fast", messages=messages, tools=TOOLS, tool_choice="auto", response_format=SCHEMA,
        temperature=0.3, seed=7, extra_body={"top_k": 5, "repetition_penalty": 1.1})
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    sent = upstreams["3070"].requests[0]
    assert sent["tools"] == TOOLS
    assert sent["response_format"] == SCHEMA
    assert sent["tool_choice"] == "auto" and sent["seed"] == 7 and sent["top_k"] == 5
    assert sent["messages"] == messages
    assert sent["model"] == "qwen2.5-7b-instruct-awq"


async def test_completions_and_embeddings(sdk, upstreams):
    _, client = sdk
    completion = await client.completions.create(model="3070", prompt="Say done")
    assert completion.choices[0].text == " done"
    embedding = await client.embeddings.create(model="small", input="vector please")
    assert embedding.data[0].embedding == [0.1, 0.2]
    assert upstreams["3070"].requests[-1]["input"] == "vector please"


async def test_force_big_tag_is_removed_and_header_sent(sdk, upstreams):
    _, client = sdk
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "summarise this #force_big please"}])
    assert raw.headers["x-routed-backend"] == "3090"
    assert raw.headers["x-route-reason"] == "force_big"
    assert upstreams["3090"].requests[0]["messages"][0]["content"] == "summarise this please"
    assert upstreams["3090"].headers[0]["X-Force-Big"] == "true"


async def test_unknown_model_is_typed_not_found(sdk):
    _, client = sdk
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert "gpt-17" in info.value.message


async def test_bad_request_is_typed(sdk):
    _, client = sdk
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="auto", messages=[])
    assert info.value.param == "messages"


async def test_backend_model_id_routes_to_its_backend(sdk):
    _, client = sdk
    raw = await client.chat.completions.with_raw_response.create(
        model="qwen2.5-14b-instruct-awq", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-routed-backend"] == "3090"
    assert raw.headers["x-route-reason"] == "explicit_model"


async def test_models_lists_auto_aliases_and_backend_models(sdk):
    _, client = sdk
    ids = [m.id async for m in client.models.list()]
    for expected in ("auto", "small", "big", "claude", "glm", "qwen2.5-7b-instruct-awq",
                     "qwen2.5-14b-instruct-awq", "glm-4.6"):
        assert expected in ids


async def test_route_dry_run(sdk, upstreams):
    router, _ = sdk
    import httpx
    async with httpx.AsyncClient() as http:
        response = await http.post(router.url + "/v1/route", json={
            "model": "auto", "messages": [{"role": "user", "content": "word " * 3000}]})
    data = response.json()
    assert response.status_code == 200
    assert data["backend"] == "3090" and data["reason"] == "medium_request"
    assert data["model"] == "qwen2.5-14b-instruct-awq"
    assert 3000 <= data["estimated_tokens"] <= 3100
    assert data["candidates"] == ["3090", "3070", "opencode"]
    assert data["gaming_mode"] is False and data["force_big"] is False
    assert upstreams["3090"].requests == []  # a dry run forwards nothing
