"""Malformed Messages and Responses bodies: a 400 in that API's own error shape naming the
field, a decision row for each, and a broken backend stream ending in that API's error event."""

from __future__ import annotations

import httpx
import pytest

from tests.agent_apis.conftest import API_KEY
from tests.conftest import decision_rows
from tests.fakes.tool_chat import ToolChat

HEADERS = {"x-api-key": API_KEY}
OK_MESSAGES = {"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({**OK_MESSAGES, "messages": []}, "messages"),
    ({**OK_MESSAGES, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({**OK_MESSAGES, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
     "messages[0].content[0].source"),
    ({**OK_MESSAGES, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "content": "x"}]}]}, "messages[0].content[0].tool_use_id"),
    ({**OK_MESSAGES, "tools": [{"input_schema": {}}]}, "tools[0].name"),
    ({**OK_MESSAGES, "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({**OK_MESSAGES, "stop_sequences": "END"}, "stop_sequences"),
    ({**OK_MESSAGES, "system": 5}, "system"),
    ({**OK_MESSAGES, "stream": "yes"}, "stream"),
])
async def test_bad_messages_body(agent_router, body, field):
    async with httpx.AsyncClient() as http:
        response = await http.post(agent_router.url + "/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert f"'{field}'" in payload["error"]["message"]
    rows = await decision_rows(agent_router)
    assert (rows[-1].endpoint, rows[-1].status_code) == ("/v1/messages", 400)
    assert f"'{field}'" in rows[-1].error


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "auto"}, "input"),
    ({"model": "auto", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ({"model": "auto", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "auto", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "auto", "input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ({"model": "auto", "input": [{"type": "message", "role": "user",
                                  "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
])
async def test_bad_responses_body(agent_router, body, field):
    async with httpx.AsyncClient() as http:
        response = await http.post(agent_router.url + "/v1/responses", json=body,
                                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == field
    assert f"'{field}'" in error["message"]
    rows = await decision_rows(agent_router)
    assert (rows[-1].endpoint, rows[-1].status_code) == ("/v1/responses", 400)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_undecodable_bodies(agent_router, raw):
    async with httpx.AsyncClient() as http:
        messages = await http.post(agent_router.url + "/v1/messages", content=raw, headers=HEADERS)
        responses = await http.post(agent_router.url + "/v1/responses", content=raw, headers=HEADERS)
    assert messages.status_code == responses.status_code == 400
    assert messages.json()["error"]["type"] == "invalid_request_error"
    assert responses.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_and_missing_key_in_each_shape(agent_router):
    async with httpx.AsyncClient() as http:
        unknown = await http.post(agent_router.url + "/v1/messages", headers=HEADERS,
                                  json={**OK_MESSAGES, "model": "no-such-model"})
        missing = await http.post(agent_router.url + "/v1/responses", json={"input": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"


async def test_backend_dying_mid_stream_ends_with_each_apis_error_event(agent_router,
                                                                        tool_chat: ToolChat):
    tool_chat.break_after = 2
    async with httpx.AsyncClient() as http:
        messages = await http.post(agent_router.url + "/v1/messages", headers=HEADERS,
                                   json={**OK_MESSAGES, "stream": True})
        responses = await http.post(agent_router.url + "/v1/responses", headers=HEADERS,
                                    json={"model": "auto", "input": "hi", "stream": True})
    assert messages.status_code == 200
    assert messages.text.startswith("event: message_start")
    assert "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\"" in messages.text
    assert "message_stop" not in messages.text
    assert responses.text.startswith("event: response.created")
    assert "event: response.failed" in responses.text and "response.completed" not in responses.text
    rows = await decision_rows(agent_router)
    assert [(r.endpoint, r.status_code) for r in rows[-2:]] == [
        ("/v1/messages", 502), ("/v1/responses", 502)]
