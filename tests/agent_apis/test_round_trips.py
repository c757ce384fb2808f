"""Property tests: translations keep meaning. Messages -> Chat -> Messages for requests, Chat ->
Messages -> Chat for answers (whole and streamed, cut at random places), and Responses <-> Chat
likewise: texts, tool calls with their ids and arguments, tool results and stop reasons."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from router.wire import messages as msg
from router.wire import messages_upstream as up
from router.wire import responses as rsp
from router.wire.messages_stream import ChatToMessagesStream

texts = st.text(min_size=1, max_size=12)
ids = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
names = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)
args = st.dictionaries(st.text(max_size=4), st.integers(-2**53, 2**53) | st.text(max_size=6) | st.booleans(),
                       max_size=3)
calls = st.lists(st.tuples(ids, names, args), max_size=3, unique_by=lambda c: c[0])
SETTINGS = settings(max_examples=60, deadline=None)


# -- Messages requests --------------------------------------------------------------------

@st.composite
def conversations(draw: Any) -> list[tuple[Any, ...]]:
    """A conversation as meaning: user text, assistant text and calls, the calls' results."""
    turns: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 3))):
        turns.append(("user", draw(texts)))
        text = draw(st.none() | texts)
        made = draw(calls)
        turns.append(("assistant", text, tuple(made)))
        if made:
            turns.append(("results", tuple((c[0], draw(texts)) for c in made)))
    return turns


def to_messages(turns: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for turn in turns:
        if turn[0] == "user":
            out.append({"role": "user", "content": [{"type": "text", "text": turn[1]}]})
        elif turn[0] == "assistant":
            blocks = [{"type": "text", "text": turn[1]}] if turn[1] else []
            blocks += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in turn[2]]
            out.append({"role": "assistant", "content": blocks or [{"type": "text", "text": "ok"}]})
        else:
            out.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": i, "content": t} for i, t in turn[1]]})
    return out


def meaning(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for message in messages:
        for block in message["content"]:
            if block["type"] == "text":
                out.append((message["role"], block["text"]))
            elif block["type"] == "tool_use":
                out.append(("call", block["id"], block["name"], block["input"]))
            elif block["type"] == "tool_result":
                out.append(("result", block["tool_use_id"], block["content"]))
    return out


@SETTINGS
@given(conversations(), st.none() | texts, st.lists(texts, max_size=2))
def test_messages_request_round_trip(turns, system, stops):
    body: dict[str, Any] = {"model": "m", "max_tokens": 77, "messages": to_messages(turns)}
    if system:
        body["system"] = system
    if stops:
        body["stop_sequences"] = stops
    msg.validate(body)
    back = up.chat_to_messages_request(msg.messages_to_chat(body))
    assert meaning(back["messages"]) == meaning(body["messages"])
    assert back.get("system") == body.get("system")
    assert back.get("stop_sequences") == (stops or None) and back["max_tokens"] == 77


# -- Chat answers, whole and streamed -----------------------------------------------------

@st.composite
def chat_answers(draw: Any) -> dict[str, Any]:
    made = draw(calls)
    text = draw(st.none() | texts)
    finish = draw(st.sampled_from(["tool_calls", "length"] if made else ["stop", "length"]))
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if made:
        message["tool_calls"] = [{"id": i, "type": "function", "function": {
            "name": n, "arguments": orjson.dumps(a).decode()}} for i, n, a in made]
    return {"id": "chatcmpl-x", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": draw(st.integers(0, 999)),
                      "completion_tokens": draw(st.integers(0, 999))}}


def answer_meaning(chat: dict[str, Any]) -> tuple[Any, ...]:
    choice = chat["choices"][0]
    message = choice["message"]
    made = tuple((c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                 for c in message.get("tool_calls") or ())
    return message.get("content") or None, made, choice["finish_reason"]


@SETTINGS
@given(chat_answers())
def test_chat_answer_round_trip_through_messages(chat):
    back = up.messages_to_chat_response(msg.chat_to_messages_response(chat, "m"))
    assert answer_meaning(back) == answer_meaning(chat)
    assert back["usage"]["prompt_tokens"] == chat["usage"]["prompt_tokens"]
    assert back["usage"]["completion_tokens"] == chat["usage"]["completion_tokens"]


def chat_sse(chat: dict[str, Any], cuts: list[int]) -> bytes:
    """The answer as a Chat stream, text and arguments cut into pieces at `cuts`."""
    choice = chat["choices"][0]
    message = choice["message"]

    def pieces(text: str) -> list[str]:
        points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
        return [text[a:b] for a, b in zip(points, points[1:]) if text[a:b]]

    events: list[dict[str, Any]] = [{"id": "chatcmpl-x", "choices": [{"delta": {"role": "assistant"}}]}]
    events += [{"choices": [{"delta": {"content": p}}]} for p in pieces(message.get("content") or "")]
    for index, call in enumerate(message.get("tool_calls") or ()):
        events.append({"choices": [{"delta": {"tool_calls": [{"index": index, "id": call["id"], "function": {
            "name": call["function"]["name"], "arguments": ""}}]}}]})
        events += [{"choices": [{"delta": {"tool_calls": [{"index": index, "function": {"arguments": p}}]}}]}
                   for p in pieces(call["function"]["arguments"])]
    events.append({"choices": [{"delta": {}, "finish_reason": choice["finish_reason"]}]})
    events.append({"choices": [], "usage": chat["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def feed(translator: Any, raw: bytes, size: int) -> bytes:
    out = b"".join(translator.feed(raw[i:i + size]) for i in range(0, len(raw), size))
    return out + translator.end() if hasattr(translator, "end") else out


def assemble_chat(raw: bytes) -> dict[str, Any]:
    text, made, finish = "", {}, None
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = orjson.loads(line[6:])
        for choice in event["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                entry = made.setdefault(call["index"], {"id": call.get("id"), "type": "function",
                                                        "function": {"name": "", "arguments": ""}})
                entry["function"]["name"] += call["function"].get("name") or ""
                entry["function"]["arguments"] += call["function"].get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message = {"content": text or None, "tool_calls": [made[i] for i in sorted(made)]}
    return {"choices": [{"message": message, "finish_reason": finish}]}


@SETTINGS
@given(chat_answers(), st.lists(st.integers(0, 50), max_size=4), st.integers(1, 40))
def test_chat_stream_round_trip_through_messages_events(chat, cuts, size):
    anthropic_sse = feed(ChatToMessagesStream("m"), chat_sse(chat, cuts), size)
    back = up.MessagesToChatStream("m", include_usage=True)
    chat_again = feed(back, anthropic_sse, size)
    assert back.done and back.failed is None
    assert answer_meaning(assemble_chat(chat_again)) == answer_meaning(chat)


# -- Responses ------------------------------------------------------------------------------

def items_of(turns: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for turn in turns:
        if turn[0] == "user":
            items.append({"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": turn[1]}]})
        elif turn[0] == "assistant":
            if turn[1]:
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": turn[1]}]})
            items += [{"type": "function_call", "call_id": i, "name": n,
                       "arguments": orjson.dumps(a).decode()} for i, n, a in turn[2]]
        else:
            items += [{"type": "function_call_output", "call_id": i, "output": t} for i, t in turn[1]]
    return items


def items_meaning(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for item in items:
        if item["type"] == "message":
            out.append((item["role"], "".join(p["text"] for p in item["content"])))
        elif item["type"] == "function_call":
            out.append(("call", item["call_id"], item["name"], orjson.loads(item["arguments"])))
        else:
            out.append(("result", item["call_id"], item["output"]))
    return out


def chat_meaning(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The same meaning read off Chat messages (the inverse of responses_to_chat)."""
    out: list[tuple[Any, ...]] = []
    for m in messages:
        if m["role"] == "tool":
            out.append(("result", m["tool_call_id"], m["content"]))
            continue
        if m.get("content"):
            out.append((m["role"], m["content"]))
        out += [("call", c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                for c in m.get("tool_calls") or ()]
    return out


@SETTINGS
@given(conversations())
def test_responses_request_keeps_meaning(turns):
    body = {"model": "m", "input": items_of(turns), "store": False}
    rsp.validate(body)
    assert chat_meaning(rsp.responses_to_chat(body)["messages"]) == items_meaning(body["input"])


def output_meaning(response: dict[str, Any]) -> tuple[Any, ...]:
    text = "".join(p["text"] for i in response["output"] if i["type"] == "message" for p in i["content"])
    made = tuple((i["call_id"], i["name"], orjson.loads(i["arguments"]))
                 for i in response["output"] if i["type"] == "function_call")
    return text or None, made, response["status"]


@SETTINGS
@given(chat_answers(), st.lists(st.integers(0, 50), max_size=4), st.integers(1, 40))
def test_chat_answer_to_responses_whole_and_streamed(chat, cuts, size):
    content, made, finish = answer_meaning(chat)
    expected = (content, made, "incomplete" if finish == "length" else "completed")
    assert output_meaning(rsp.chat_to_responses_response(chat, "m")) == expected
    stream = rsp.ChatToResponsesStream("m")
    raw = feed(stream, chat_sse(chat, cuts), size)
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1]["type"] == "response.completed" and stream.failed is None
    assert output_meaning(events[-1]["response"]) == expected
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert (deltas or None) == content
