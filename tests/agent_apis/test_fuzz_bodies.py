"""Nothing crashes on a malformed body: any JSON in a Messages or Responses body is either
translated or refused with a BadRequest naming a field (never a KeyError or TypeError)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import BadRequest
from router.wire import messages as msg
from router.wire import messages_upstream as up
from router.wire import responses as rsp
from router.wire.messages_stream import ChatToMessagesStream

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | \
    st.sampled_from(["", "x", "user", "assistant", "system", "text", "image", "tool_use",
                     "tool_result", "function", "custom", "message", "function_call",
                     "function_call_output", "input_text", "input_image", "auto", "any", "tool",
                     "base64", "url", "document", "reasoning", "required", "none"])
keys = st.sampled_from(["type", "role", "content", "text", "source", "data", "url", "id", "name",
                        "input", "tool_use_id", "call_id", "arguments", "output", "image_url",
                        "media_type", "is_error", "refusal", "parameters", "input_schema"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(keys, inner, max_size=4), max_leaves=12)
SETTINGS = settings(max_examples=300, deadline=None)


def attempt(validate: Any, translate: Any, body: dict[str, Any]) -> None:
    try:
        validate(body)
    except BadRequest as exc:
        assert exc.param and f"'{exc.param.split('.')[0].split('[')[0]}" in exc.message
        return
    translate(body)


@SETTINGS
@given(json_values, json_values, json_values, json_values)
def test_messages_bodies(messages, system, tools, tool_choice):
    body = {"model": "m", "max_tokens": 5, "messages": messages, "system": system,
            "tools": tools, "tool_choice": tool_choice}
    attempt(msg.validate, msg.messages_to_chat, body)
    attempt(msg.validate, msg.messages_to_chat,
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": messages}]})


@SETTINGS
@given(json_values, json_values, json_values, json_values)
def test_responses_bodies(items, tools, tool_choice, text):
    body = {"model": "m", "input": items, "tools": tools, "tool_choice": tool_choice, "text": text}
    attempt(rsp.validate, rsp.responses_to_chat, body)
    attempt(rsp.validate, rsp.responses_to_chat, {"model": "m", "input": [items]})


answer_keys = st.sampled_from(["id", "choices", "message", "delta", "content", "tool_calls",
                               "function", "name", "arguments", "index", "finish_reason",
                               "usage", "prompt_tokens", "completion_tokens", "error", "type"])
answers = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(answer_keys, inner, max_size=4), max_leaves=14)


@SETTINGS
@given(answers)
def test_odd_backend_answers_are_unusable_not_crashes(answer):
    """A backend's answer of the wrong shape is a ValueError (a 502 with a row), whole or
    streamed (where it is skipped), never another exception."""
    raw = orjson.dumps(answer)
    for translate in (msg.translate_chat_answer, rsp.translate_chat_answer):
        try:
            translate(raw, "m")
        except ValueError:
            pass
    event = b"data: " + raw + b"\n\n"
    for stream in (ChatToMessagesStream("m"), rsp.ChatToResponsesStream("m")):
        stream.feed(event)
        stream.end()


@SETTINGS
@given(answers, answers)
def test_the_anthropic_backends_translations_fail_only_as_expected(chat_messages, event):
    """A chat body of an odd shape: ValueError-family (the backend answers 400); an odd
    Anthropic event: the stream is marked failed (the backend raises StreamBroken)."""
    try:
        up.chat_to_messages_request({"model": "m", "messages": chat_messages,
                                     "tools": chat_messages})
    except msg.BAD_SHAPE:
        pass
    stream = up.MessagesToChatStream("m")
    stream.feed(b"event: x\ndata: " + orjson.dumps(event) + b"\n\n")
