"""The OpenAI <-> OpenCode translation: prompts, events, usage, finish reasons and errors."""

from __future__ import annotations

import orjson
import pytest

from router.backends.opencode_mapping import (
    HISTORY_HEADER,
    ChunkEncoder,
    Delta,
    Done,
    Failure,
    PromptError,
    SessionEvents,
    build_prompt,
    completion_body,
    map_error,
    usage_of,
)

SID = "ses_1"


def test_single_user_message_is_one_text_part_without_system():
    prompt = build_prompt({"messages": [{"role": "user", "content": "hi"}]})
    assert prompt.system is None
    assert prompt.parts == [{"type": "text", "text": "hi"}]


def test_system_and_developer_messages_become_the_system_field():
    prompt = build_prompt({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "hi"}]})
    assert prompt.system == "Be brief.\n\nAnswer in French."


def test_history_travels_as_a_transcript_before_the_last_user_message():
    prompt = build_prompt({"messages": [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Ahoy Ada"},
        {"role": "user", "content": "what is my name?"}]})
    history, last = prompt.parts
    assert history["text"].startswith(HISTORY_HEADER)
    assert history["text"].index("my name is Ada") < history["text"].index("Ahoy Ada")
    assert '<turn role="assistant">' in history["text"]
    assert last == {"type": "text", "text": "what is my name?"}


def test_images_of_the_last_user_message_become_file_parts():
    prompt = build_prompt({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}]})
    assert prompt.parts[-1] == {"type": "file", "mime": "image/jpeg",
                                "url": "data:image/jpeg;base64,AAAA", "filename": "image-1"}


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": [{"role": "system", "content": "only system"}]},
    {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
])
def test_unusable_requests_raise_prompt_error(body):
    with pytest.raises(PromptError):
        build_prompt(body)


def test_tool_choice_none_is_plain_chat():
    build_prompt({"messages": [{"role": "user", "content": "x"}], "tools": [{}], "tool_choice": "none"})


def test_usage_counts_cache_and_reasoning():
    usage = usage_of({"tokens": {"input": 10, "output": 5, "reasoning": 2,
                                 "cache": {"read": 100, "write": 3}}})
    assert usage == {"prompt_tokens": 113, "completion_tokens": 7, "total_tokens": 120,
                     "prompt_tokens_details": {"cached_tokens": 100},
                     "completion_tokens_details": {"reasoning_tokens": 2}}


def ev(kind, **props):
    return {"type": kind, "properties": {"sessionID": SID, **props}}


def assistant(**info):
    return ev("message.updated", info={"id": "msg_a", "role": "assistant", "sessionID": SID, **info})


def test_events_become_deltas_then_done_with_usage_and_finish():
    t = SessionEvents(SID, "p/m")
    outs = []
    for event in [
        ev("message.updated", info={"id": "msg_u", "role": "user", "sessionID": SID}),
        ev("message.part.updated", part={"id": "prt_u", "messageID": "msg_u", "type": "text",
                                         "text": "question"}),
        ev("message.part.delta", messageID="msg_u", partID="prt_u", field="text", delta="no"),
        assistant(),
        ev("message.part.updated", part={"id": "prt_r", "messageID": "msg_a", "type": "reasoning",
                                         "text": ""}),
        ev("message.part.delta", messageID="msg_a", partID="prt_r", field="text", delta="hmm"),
        ev("message.part.updated", part={"id": "prt_t", "messageID": "msg_a", "type": "text",
                                         "text": ""}),
        ev("message.part.delta", messageID="msg_a", partID="prt_t", field="text", delta="Hel"),
        {"type": "message.part.delta", "properties": {"sessionID": "ses_other", "messageID": "m",
                                                      "partID": "p", "field": "text", "delta": "X"}},
        # The final part update carries the full text; only the missing tail is emitted.
        ev("message.part.updated", part={"id": "prt_t", "messageID": "msg_a", "type": "text",
                                         "text": "Hello"}),
        assistant(finish="length", tokens={"input": 3, "output": 2, "reasoning": 0,
                                           "cache": {"read": 0, "write": 0}}),
        ev("session.idle"),
        ev("message.part.delta", messageID="msg_a", partID="prt_t", field="text", delta="late"),
    ]:
        outs += t.feed(event)
    assert outs[:3] == [Delta("hmm", "reasoning"), Delta("Hel"), Delta("lo")]
    done = outs[3]
    assert isinstance(done, Done) and done.finish_reason == "length"
    assert done.usage["total_tokens"] == 5
    assert len(outs) == 4


def test_assistant_error_and_session_error_become_one_failure():
    t = SessionEvents(SID, "zai/glm")
    outs = t.feed(assistant(error={"name": "ProviderAuthError",
                                   "data": {"providerID": "zai", "message": "token expired"}}))
    outs += t.feed(ev("session.error", error={"name": "UnknownError", "data": {"message": "x"}}))
    assert len(outs) == 1 and isinstance(outs[0], Failure)
    assert outs[0].status == 401 and not outs[0].retriable
    assert "opencode auth login" in outs[0].message


def test_retry_announcement_fails_fast_and_retriable():
    t = SessionEvents(SID, "zai/glm", retry_limit=0)
    [failure] = t.feed(ev("session.status", status={"type": "retry", "attempt": 1,
                                                     "message": "Overloaded", "next": 0}))
    assert isinstance(failure, Failure) and failure.status == 503 and failure.retriable
    limited = SessionEvents(SID, "zai/glm").feed(ev("session.status", status={
        "type": "retry", "attempt": 1, "message": "Rate limit reached for requests"}))[0]
    assert limited.status == 429


def test_retry_limit_tolerates_some_retries():
    t = SessionEvents(SID, "zai/glm", retry_limit=2)
    assert t.feed(ev("session.status", status={"type": "retry", "attempt": 2, "message": "x"})) == []


def api_error(status, message="boom", retryable=False):
    body = orjson.dumps({"error": {"message": message}}).decode()
    return {"name": "APIError", "data": {"message": "generic", "statusCode": status,
                                         "isRetryable": retryable, "responseBody": body}}


@pytest.mark.parametrize(("error", "status", "retriable", "code"), [
    (api_error(401), 401, False, "provider_auth_error"),
    (api_error(403), 401, False, "provider_auth_error"),
    (api_error(404), 404, False, "model_not_found"),
    (api_error(400), 400, False, "invalid_request"),
    (api_error(429, retryable=True), 429, True, "rate_limit_exceeded"),
    (api_error(500, retryable=True), 502, True, "upstream_error"),
    ({"name": "ContextOverflowError", "data": {"message": "too long"}}, 400, False,
     "context_length_exceeded"),
    ({"name": "UnknownError", "data": {"message": "weird"}}, 502, True, "upstream_error"),
    ("not an object", 502, True, "upstream_error"),
])
def test_error_mapping(error, status, retriable, code):
    failure = map_error(error, "zai/glm-4.6")
    assert (failure.status, failure.retriable, failure.code) == (status, retriable, code)
    envelope = orjson.loads(failure.body)["error"]
    assert envelope["message"] == failure.message and envelope["code"] == code


def test_provider_message_is_taken_from_the_response_body():
    failure = map_error(api_error(401, "Your token expired"), "anthropic/claude")
    assert "Your token expired" in failure.message


def test_completion_body_is_an_openai_chat_completion():
    body = orjson.loads(completion_body("p/m", "hi", "thought", Done("stop", {"total_tokens": 1})))
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi",
                                             "refusal": None, "reasoning_content": "thought"}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["total_tokens"] == 1


@pytest.mark.parametrize("include_usage", [True, False])
def test_chunk_encoder_stream_shape(include_usage):
    enc = ChunkEncoder("p/m", include_usage)
    raw = enc.start() + enc.delta(Delta("a")) + enc.done(Done("stop", {"prompt_tokens": 1,
                                                                       "completion_tokens": 1,
                                                                       "total_tokens": 2}))
    events = [line[6:] for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    assert chunks[1]["choices"][0]["delta"] == {"content": "a"}
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert ("usage" in chunks[-1] and chunks[-1]["choices"] == []) is include_usage
