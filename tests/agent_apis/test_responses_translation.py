"""Table tests of the Responses <-> Chat translation functions (pure, no I/O)."""

from __future__ import annotations

import orjson
import pytest

from router.errors import BadRequest
from router.wire import responses as rsp


def test_items_to_chat_messages():
    body = {"model": "m", "instructions": "Sys", "max_output_tokens": 50, "temperature": 0.1,
            "stream": True, "store": False, "parallel_tool_calls": False,
            "include": ["reasoning.encrypted_content"],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
                      {"type": "web_search"}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "see"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,QQ=="}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "r1"},
                {"type": "function_call_output", "call_id": "c2",
                 "output": [{"type": "input_text", "text": "r2"}]},
                {"role": "user", "content": "thanks"}]}
    chat = rsp.responses_to_chat(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Sys\n\nDev"},
        {"role": "user", "content": [{"type": "text", "text": "see"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}}]},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"},
        {"role": "user", "content": "thanks"}]
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "f", "description": "", "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.1
    assert chat["parallel_tool_calls"] is False
    assert chat["stream_options"] == {"include_usage": True}
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"type": "object"}}}
    assert "store" not in chat and "include" not in chat


def test_assistant_text_before_a_call_keeps_its_text():
    chat = rsp.responses_to_chat({"model": "m", "input": [
        {"role": "user", "content": "q"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]})
    assert chat["messages"][-1]["content"] == "Let me look."
    assert chat["messages"][-1]["tool_calls"][0]["id"] == "c"


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "m", "input": "x", "store": True}, "store"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x"}, "model"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0].image_url"),
])
def test_validation(body, field):
    with pytest.raises(BadRequest) as bad:
        rsp.validate(body)
    assert bad.value.param == field and f"'{field}'" in bad.value.message


def test_store_false_and_absent_are_fine():
    rsp.validate({"model": "m", "input": "x", "store": False})
    rsp.validate({"model": "m", "input": "x"})


@pytest.mark.parametrize(("finish", "status"), [("stop", "completed"), ("length", "incomplete"),
                                                ("tool_calls", "completed")])
def test_answer_translation(finish, status):
    response = rsp.chat_to_responses_response({
        "id": "chatcmpl-1", "created": 5, "choices": [{"finish_reason": finish, "message": {
            "content": "Hi", "tool_calls": [{"id": "c9", "function": {"name": "f", "arguments": '{"a":1}'}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}}, "gpt-x")
    assert response["status"] == status and response["model"] == "gpt-x"
    assert [i["type"] for i in response["output"]] == ["message", "function_call"]
    assert response["output"][0]["content"][0] == {"type": "output_text", "text": "Hi",
                                                   "annotations": [], "logprobs": []}
    call = response["output"][1]
    assert (call["call_id"], call["name"], call["arguments"], call["status"]) == ("c9", "f", '{"a":1}', "completed")
    assert response["usage"]["total_tokens"] == 7 and response["usage"]["input_tokens"] == 3
    assert response["id"].startswith("resp_") and response["created_at"] == 5


def parse_events(raw: bytes) -> list[dict]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith("event: "):
            payload = orjson.loads(lines[1][6:])
            assert payload["type"] == lines[0][7:]
            out.append(payload)
    return out


def test_stream_event_sequence():
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in [
        {"choices": [{"delta": {"role": "assistant", "content": "He"}}]},
        {"choices": [{"delta": {"content": "llo"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}]) + b"data: [DONE]\n\n"
    stream = rsp.ChatToResponsesStream("m")
    out = b"".join(stream.feed(raw[i:i + 11]) for i in range(0, len(raw), 11)) + stream.end()
    seq = parse_events(out)
    assert [e["type"] for e in seq] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in seq] == list(range(len(seq)))
    assert seq[6]["text"] == "Hello" and seq[12]["arguments"] == '{"a":1}'
    done = seq[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 3
    assert [i["type"] for i in done["output"]] == ["message", "function_call"]
    assert done["output"][1]["call_id"] == "c1" and done["output"][0]["content"][0]["text"] == "Hello"


def test_stream_failure_is_response_failed():
    stream = rsp.ChatToResponsesStream("m")
    stream.feed(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
    seq = parse_events(stream.end())
    assert seq[-1]["type"] == "response.failed"
    assert seq[-1]["response"]["status"] == "failed" and seq[-1]["response"]["error"]["message"]
    assert stream.failed


def test_custom_tools_round_trip_as_custom_tool_calls():
    """Codex's free-form tools (apply_patch): a function with one string parameter for the
    backend, custom_tool_call items for the client, whole and streamed."""
    body = {"model": "m", "store": False,
            "tools": [{"type": "custom", "name": "apply_patch", "description": "Patch files."}],
            "input": [{"role": "user", "content": "fix it"},
                      {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch",
                       "input": "*** Begin Patch"},
                      {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"}]}
    rsp.validate(body)
    chat = rsp.responses_to_chat(body)
    assert chat["tools"][0]["function"]["parameters"] == rsp.CUSTOM_PARAMETERS
    assert chat["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"input":"*** Begin Patch"}'
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "Done"}
    custom = rsp.custom_tools(body)
    answer = {"choices": [{"finish_reason": "tool_calls", "message": {"content": None, "tool_calls": [
        {"id": "c2", "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin Patch\\n"}'}}]}}]}
    [item] = rsp.chat_to_responses_response(answer, "m", custom)["output"]
    assert (item["type"], item["call_id"], item["input"]) == ("custom_tool_call", "c2", "*** Begin Patch\n")
    stream = rsp.ChatToResponsesStream("m", custom=custom)
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c2", "function": {
            "name": "apply_patch", "arguments": '{"input": "*** Be'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'gin"}'}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}]) + b"data: [DONE]\n\n"
    seq = parse_events(stream.feed(raw))
    kinds = [e["type"] for e in seq]
    assert "response.function_call_arguments.delta" not in kinds
    assert seq[kinds.index("response.custom_tool_call_input.done")]["input"] == "*** Begin"
    [done] = seq[-1]["response"]["output"]
    assert (done["type"], done["input"]) == ("custom_tool_call", "*** Begin")
