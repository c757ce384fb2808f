"""The anthropic backend on its own against the fake Anthropic server: model choice, health,
and how each refusal is reported (who is at fault, and whether the next candidate is tried)."""

from __future__ import annotations

import pytest

from router.backends.anthropic import DEFAULT_MODEL, AnthropicBackend
from router.backends.base import ModelInfo, UpstreamError
from tests.fakes.fake_anthropic import FakeAnthropic

HI = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}


async def test_health_lists_models_and_a_bad_key_is_named(fake_anthropic: FakeAnthropic):
    good = AnthropicBackend("claude", fake_anthropic.url, fake_anthropic.api_key)
    bad = AnthropicBackend("claude", fake_anthropic.url + "/v1", "sk-wrong")
    try:
        report = await good.check_health()
        assert report.healthy and [m.id for m in report.models] == ["claude-sonnet-4-5"]
        assert report.models[0].max_model_len == 200_000
        refused = await bad.check_health()
        assert not refused.healthy and "ANTHROPIC_API_KEY" in (refused.error or "")
    finally:
        await good.close()
        await bad.close()


def test_model_resolution():
    backend = AnthropicBackend("claude", None, "k")
    assert backend.url == "https://api.anthropic.com"
    served = (ModelInfo("claude-opus-4-5"), ModelInfo("claude-sonnet-4-5"))
    assert backend.resolve_model("claude-haiku-4-5", served) == "claude-haiku-4-5"
    assert backend.resolve_model("claude", served) == DEFAULT_MODEL
    assert AnthropicBackend("c", None, "k", models=("claude-x",)).resolve_model(None, ()) == "claude-x"


@pytest.mark.parametrize(("status", "retriable", "words"), [
    (401, True, "refused the operator's ANTHROPIC_API_KEY"),
    (403, True, "ANTHROPIC_API_KEY"),
    (429, True, "HTTP 429"),
    (529, True, "overloaded"),
    (400, False, "HTTP 400"),
])
async def test_refusals(fake_anthropic: FakeAnthropic, status, retriable, words):
    backend = AnthropicBackend("claude", fake_anthropic.url, fake_anthropic.api_key)
    fake_anthropic.fail_status = status
    try:
        with pytest.raises(UpstreamError) as failed:
            await backend.send("/v1/chat/completions", {**HI, "max_tokens": 5}, stream=False,
                               headers={})
    finally:
        await backend.close()
    assert failed.value.retriable is retriable and failed.value.status == status
    assert words in failed.value.message
    if status == 400:  # a chat client gets its error in the OpenAI shape
        assert b'"error":{"message":"fake failure 400"' in (failed.value.body or b"")


async def test_other_endpoints_are_left_to_other_backends(fake_anthropic: FakeAnthropic):
    backend = AnthropicBackend("claude", fake_anthropic.url, fake_anthropic.api_key)
    with pytest.raises(UpstreamError) as failed:
        await backend.send("/v1/embeddings", {"input": "x"}, stream=False, headers={})
    assert failed.value.retriable and fake_anthropic.requests == []


def test_a_native_stream_that_reports_an_error_fails_its_row():
    from router.http.agent_apis import MessagesRelay

    relay = MessagesRelay({}, "claude-x")
    relay.start(native=True, input_tokens=0)
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    assert relay.feed(b"event: ping\ndata: {}\n\n" + error).endswith(error)  # passed on as sent
    assert relay.failed and "overloaded_error" in relay.failed
