"""The OpenAI backend's error mapping, over a fake transport: one place turns every transport's
failures into UpstreamError (before the status) or StreamBroken (mid-body)."""

from __future__ import annotations

import orjson
import pytest

from router.backends import http1
from router.backends.openai import OpenAIBackend
from router.errors import StreamBroken, UpstreamError
from tests.fakes.transport import FakeTransport

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def backend(transport: FakeTransport) -> OpenAIBackend:
    return OpenAIBackend("gpu", "http://gpu:8001", api_key="k", transport=transport)


async def test_a_good_answer_streams_through_and_releases() -> None:
    transport = FakeTransport(chunks=[b"data: {}\n\n", b"data: [DONE]\n\n"],
                              headers={"content-type": "text/event-stream"})
    upstream = await backend(transport).send("/v1/chat/completions", BODY, stream=True,
                                             headers={"X-Request-ID": "r1"})
    assert upstream.status == 200 and upstream.content_type == "text/event-stream"
    assert [c async for c in upstream.chunks] == [b"data: {}\n\n", b"data: [DONE]\n\n"]
    await upstream.release()
    assert transport.exchanges[0].released
    path, headers, body = transport.requests[0]
    assert path == "/v1/chat/completions" and orjson.loads(body) == BODY
    assert headers["Authorization"] == "Bearer k" and headers["X-Request-ID"] == "r1"


@pytest.mark.parametrize("failure,words", [
    (http1.ConnectFailed(ConnectionRefusedError(111, "Connection refused")),
     "refused the connection"),
    (TimeoutError(), "timed out before answering"),
    (http1.ProtocolError("bad status line"), "failed: ProtocolError: bad status line"),
])
async def test_failures_before_the_status_are_upstream_errors(failure: BaseException,
                                                             words: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        await backend(FakeTransport(fail_on_send=failure)).send(
            "/v1/chat/completions", BODY, stream=False, headers={})
    assert words in caught.value.message and caught.value.retriable


async def test_an_error_status_carries_the_backends_code_and_message() -> None:
    error = orjson.dumps({"error": {"message": "Model 'x' exited", "code": "model_start_failed"}})
    transport = FakeTransport(status=503, chunks=[error], headers={"retry-after": "3"})
    with pytest.raises(UpstreamError) as caught:
        await backend(transport).send("/v1/chat/completions", BODY, stream=False, headers={})
    failure = caught.value
    assert (failure.status, failure.code, failure.retry_after) == (503, "model_start_failed", "3")
    assert "answered HTTP 503: Model 'x' exited" in failure.message and failure.retriable
    assert transport.exchanges[0].released


@pytest.mark.parametrize("failure,words", [
    (http1.ConnectionLost("peer closed"), "dropped the connection mid-response (peer closed)"),
    (TimeoutError(), "stopped sending (read timeout)"),
    (http1.ProtocolError("chunk size"), "failed mid-response: ProtocolError: chunk size"),
])
async def test_failures_mid_body_are_stream_broken(failure: BaseException, words: str) -> None:
    transport = FakeTransport(chunks=[b"data: {}\n\n"], fail_after=failure,
                              headers={"content-type": "text/event-stream"})
    upstream = await backend(transport).send("/v1/chat/completions", BODY, stream=True, headers={})
    seen = []
    with pytest.raises(StreamBroken, match=words.replace("(", r"\(").replace(")", r"\)")):
        async for chunk in upstream.chunks:
            seen.append(chunk)
    assert seen == [b"data: {}\n\n"]
