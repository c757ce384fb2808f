"""Table tests of the Messages <-> Chat translation functions (pure, no I/O)."""

from __future__ import annotations

import orjson
import pytest

from router.errors import BadRequest
from router.wire import messages as msg
from router.wire import messages_upstream as up
from router.wire.messages_stream import ChatToMessagesStream

USER = {"role": "user", "content": "hi"}


def chat_of(**fields):
    return msg.messages_to_chat({"model": "m", "max_tokens": 9, "messages": [USER], **fields})


@pytest.mark.parametrize(("fields", "expected"), [
    ({"system": "Be brief."}, {"messages": [{"role": "system", "content": "Be brief."}, USER]}),
    ({"system": [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                 {"type": "text", "text": "B"}]},
     {"messages": [{"role": "system", "content": "A\n\nB"}, USER]}),
    ({"system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3; cch=1f;"},
                 {"type": "text", "text": "You are Claude Code."}]},  # the per-request block goes
     {"messages": [{"role": "system", "content": "You are Claude Code."}, USER]}),
    ({"stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9},
     {"stop": ["END"], "temperature": 0.2, "top_p": 0.9}),
    ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "metadata": {"user_id": "u"}}, {}),
    ({"tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}},
     {"tools": [{"type": "function", "function": {"name": "f", "description": "",
                                                  "parameters": {"type": "object"}}}],
      "tool_choice": "required"}),
    ({"tools": [{"name": "f"}], "tool_choice": {"type": "tool", "name": "f",
                                                "disable_parallel_tool_use": True}},
     {"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False}),
    ({"tools": [{"name": "f"}], "tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     {"tools": None, "tool_choice": None}),  # a server tool: no Chat backend can run it
])
def test_request_fields(fields, expected):
    chat = chat_of(**fields)
    for key, value in expected.items():
        assert chat.get(key) == value, key
    assert chat["max_tokens"] == 9 and chat["model"] == "m"
    assert "thinking" not in chat and "metadata" not in chat


def test_blocks_images_tool_use_and_tool_results():
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "t2", "name": "g", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
             "content": [{"type": "text", "text": "bad"}]},
            {"type": "text", "text": "go on"}]}]}
    before = orjson.dumps(body)
    chat = msg.messages_to_chat(body)
    assert orjson.dumps(body) == before  # the input is not modified
    assert chat["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: bad"},
        {"role": "user", "content": "go on"}]


@pytest.mark.parametrize(("choice", "stop", "blocks"), [
    ({"message": {"content": "hi"}, "finish_reason": "stop"}, ("end_turn", None), ["text"]),
    ({"message": {"content": "hi"}, "finish_reason": "length"}, ("max_tokens", None), ["text"]),
    ({"message": {"content": "hi"}, "finish_reason": "stop", "stop_reason": "END"},
     ("stop_sequence", "END"), ["text"]),
    ({"message": {"content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": '{"x": 2}'}}]},
      "finish_reason": "tool_calls"}, ("tool_use", None), ["tool_use"]),
    ({"message": {"content": "", "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": "not json"}}]},
      "finish_reason": "stop"}, ("tool_use", None), ["tool_use"]),
])
def test_answer_translation(choice, stop, blocks):
    answer = msg.chat_to_messages_response(
        {"id": "chatcmpl-9", "choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        "claude-x")
    assert (answer["stop_reason"], answer["stop_sequence"]) == stop
    assert [b["type"] for b in answer["content"]] == blocks
    assert answer["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert answer["id"] == "msg_9" and answer["model"] == "claude-x" and answer["type"] == "message"
    if blocks == ["tool_use"]:
        assert answer["content"][0]["input"] in ({"x": 2}, {"arguments": "not json"})


def test_documents_pass_validation_and_become_text_or_a_note():
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0="}}]}]}
    msg.validate(body)  # a native Anthropic backend reads the PDF as sent
    parts = msg.messages_to_chat(body)["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "notes"}
    assert "application/pdf document" in parts[1]["text"]


def test_validation_names_fields():
    with pytest.raises(BadRequest) as bad:
        msg.validate({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "video"}]}]})
    assert bad.value.param == "messages[0].content[0].type"
    msg.validate({"model": "m", "messages": [USER]}, count_only=True)  # no max_tokens needed


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith("event: "):
            out.append((lines[0][7:], orjson.loads(lines[1][6:])))
    return out


def chat_sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_stream_event_sequence_with_text_then_parallel_tool_calls():
    raw = chat_sse(
        {"id": "chatcmpl-1", "choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "Hi"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}})
    stream = ChatToMessagesStream("m", input_tokens=6)
    # Fed in awkward pieces: a line may be cut anywhere.
    out = b"".join(stream.feed(raw[i:i + 7]) for i in range(0, len(raw), 7)) + stream.end()
    seq = events(out)
    assert [name for name, _ in seq] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert seq[0][1]["message"]["usage"]["input_tokens"] == 6
    assert seq[5][1]["content_block"] == {"type": "tool_use", "id": "a", "name": "f", "input": {}}
    assert [d["delta"]["partial_json"] for n, d in seq if d.get("delta", {}).get("type") == "input_json_delta"] \
        == ['{"x":', "1}", "{}"]
    assert seq[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert seq[-2][1]["usage"] == {"input_tokens": 7, "output_tokens": 5}
    assert stream.failed is None


def test_stream_errors_and_keepalive_comments():
    stream = ChatToMessagesStream("m")
    out = stream.feed(b": loading model\n\ndata: " + orjson.dumps({"choices": [{"delta": {"content": "x"}}]}) + b"\n\n")
    assert out.startswith(b": loading model\n\n")
    assert stream.end().startswith(b"event: error\n") and stream.failed
    broken = ChatToMessagesStream("m")
    out = broken.feed(b'data: {"error": {"message": "boom"}}\n\n')
    assert events(out)[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})


def test_reverse_request_and_answer():
    chat = {"model": "claude-x", "max_tokens": 100, "stop": "END", "parallel_tool_calls": False,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": [{"type": "text", "text": "see"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                {"role": "user", "content": "next"}]}
    body = up.chat_to_messages_request(chat)
    assert body["system"] == "S" and body["stop_sequences"] == ["END"]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "QQ=="}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
                                     {"type": "text", "text": "next"}]}]
    assert up.chat_to_messages_request({"model": "m", "messages": [USER]})["max_tokens"] == up.DEFAULT_MAX_TOKENS
    answer = up.messages_to_chat_response({
        "id": "msg_1", "model": "claude-x", "stop_reason": "max_tokens",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "usage": {"input_tokens": 2, "cache_read_input_tokens": 10, "output_tokens": 3}})
    assert answer["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "ab"},
                                    "finish_reason": "length"}
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_reverse_stream_translates_tool_use_and_error():
    def ev(name, data):
        return f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n".encode()
    raw = b"".join([
        ev("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 4}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
        ev("ping", {"type": "ping"}),
        ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'}}),
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                             "usage": {"output_tokens": 8}}),
        ev("message_stop", {"type": "message_stop"})])
    stream = up.MessagesToChatStream("claude-x", include_usage=True)
    out = stream.feed(raw[:50]) + stream.feed(raw[50:])
    datas = [line[6:] for line in out.decode().split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]" and stream.done
    chunks = [orjson.loads(d) for d in datas[:-1]]
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"] == "t"
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
    assert chunks[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[4]["usage"] == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}
    failing = up.MessagesToChatStream("m")
    failing.feed(ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert failing.failed == "Overloaded"


def test_stream_tool_calls_without_index():
    """Some backends leave `index` out of tool-call deltas: ids tell the calls apart."""
    stream = ChatToMessagesStream("m")
    out = stream.feed(chat_sse(
        {"choices": [{"delta": {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": "}"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}))
    starts = [d["content_block"]["id"] for n, d in events(out) if n == "content_block_start"]
    assert starts == ["a", "b"]
    assert [d["index"] for n, d in events(out) if n == "content_block_delta"] == [0, 0, 1]
