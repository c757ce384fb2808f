"""Bad input gets the right status and an OpenAI-shaped error that names the problem."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import backend_env, decision_rows


async def post(router, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/chat/completions"):
    async with aiohttp.ClientSession() as http, http.post(router.url + path, data=body,
                         headers={"Content-Type": "application/json", **(headers or {})}) as r:
        return r.status, await r.json(), dict(r.headers)


def assert_openai_error(payload, *words: str) -> None:
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"]


@pytest.mark.parametrize("body,status,words,param", [
    (b"{not json", 400, ["not valid JSON"], None),
    (b"\xff\xfe\x00bad", 400, ["UTF-8"], None),
    (b"[1, 2]", 400, ["JSON object"], None),
    (b"", 400, ["JSON object"], None),
    (b'{"model": "auto"}', 400, ["'messages' is required"], "messages"),
    (b'{"messages": "hi"}', 400, ["'messages' must be a non-empty array"], "messages"),
    (b'{"messages": [{"content": "hi"}]}', 400, ["role"], "messages[0].role"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', 400, ["'model' must be a string"], "model"),
    (b'{"stream": "yes", "messages": [{"role": "user", "content": "x"}]}', 400, ["'stream' must be a boolean"], "stream"),
    (b'{"max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}', 400, ["max_tokens"], "max_tokens"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, ["'nope' does not exist"], "model"),
])
async def test_bad_bodies(make_router, upstreams, body, status, words, param):
    router = await make_router(backend_env(upstreams))
    got, payload, headers = await post(router, body)
    assert got == status
    assert_openai_error(payload, *words)
    assert payload["error"]["param"] == param
    assert headers["X-Request-ID"]
    rows = await decision_rows(router)
    if status == 404:  # routed (the model was looked up): the decision is logged
        assert rows[0].status_code == 404 and rows[0].requested_model == "nope"
    else:  # refused before routing: logged too, so stats show broken clients
        assert [(r.reason, r.status_code, r.backend) for r in rows] == [("rejected", 400, None)]
        assert words[0] in rows[0].error
    assert all(fake.requests == [] for fake in upstreams.values())


async def test_oversized_body_is_413(make_router, upstreams):
    router = await make_router(backend_env(upstreams), max_body_bytes=4096)
    body = b'{"messages": [{"role": "user", "content": "' + b"x" * 10_000 + b'"}]}'
    status, payload, _ = await post(router, body)
    assert status == 413
    assert_openai_error(payload, "limit is 4096 bytes")
    [row] = await decision_rows(router)
    assert (row.reason, row.status_code) == ("rejected", 413)


async def test_a_flood_of_rejected_requests_is_counted_but_rows_are_capped(make_router, upstreams):
    """Every rejection is counted; rows are kept up to a rate, so junk cannot fill the queue."""
    router = await make_router(backend_env(upstreams), api_keys={"k": "alice"},
                               rejected_rows_per_second=2)
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.post(router.url + "/v1/chat/completions", data=b"{}") as response:
                assert response.status == 401
    rows = await decision_rows(router)
    assert 0 < len(rows) < 300
    assert {(r.reason, r.status_code) for r in rows} == {("rejected", 401)}
    metrics = router.service.metrics.render().decode()
    assert 'router_rejected_total{status="401"} 300.0' in metrics
    unlogged = float(metrics.split("\nrouter_rejected_unlogged_total ")[1].split()[0])
    assert unlogged == 300 - len(rows)


async def test_oversized_chunked_body_is_413(make_router, upstreams):
    router = await make_router(backend_env(upstreams), max_body_bytes=4096)

    async def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    async with aiohttp.ClientSession() as http:
        async with http.post(router.url + "/v1/chat/completions", data=chunks()) as r:
            assert r.status == 413
            assert_openai_error(await r.json(), "limit of 4096 bytes")


async def test_embeddings_and_completions_validate_their_fields(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    status, payload, _ = await post(router, b'{"model": "small"}', path="/v1/embeddings")
    assert status == 400 and payload["error"]["param"] == "input"
    status, payload, _ = await post(router, b'{"prompt": 7}', path="/v1/completions")
    assert status == 400 and payload["error"]["param"] == "prompt"


async def test_unknown_path_is_openai_shaped_404(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    status, payload, _ = await post(router, b"{}", path="/v1/nothing-here")
    assert status == 404
    assert_openai_error(payload, "/v1/nothing-here")


@pytest.mark.parametrize("auth,status,words", [
    (None, 401, ["Missing API key"]),
    ("Bearer wrong-key", 401, ["Invalid API key"]),
    ("Basic c2VjcmV0", 401, ["Missing API key"]),
    ("Bearer sk-alice", 200, []),
])
async def test_api_keys(make_router, upstreams, auth, status, words):
    router = await make_router({**backend_env(upstreams), "ROUTER_API_KEYS": "alice:sk-alice,bob:sk-bob"})
    headers = {"Authorization": auth} if auth else {}
    got, payload, _ = await post(router, b'{"messages": [{"role": "user", "content": "hi"}]}', headers)
    assert got == status
    if status == 401:
        assert_openai_error(payload, *words)
        assert payload["error"]["type"] == "authentication_error"
        [row] = await decision_rows(router)
        assert (row.reason, row.status_code, row.client) == ("rejected", 401, None)
    else:
        [row] = await decision_rows(router)
        assert row.client == "alice"
        # the client's key never reaches a backend
        assert "Authorization" not in upstreams["3070"].headers[0]


async def test_models_requires_key_when_keys_are_set(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_API_KEYS": "alice:sk-alice"})
    async with aiohttp.ClientSession() as http:
        async with http.get(router.url + "/v1/models") as r:
            assert r.status == 401
        async with http.get(router.url + "/v1/models", headers={"Authorization": "Bearer sk-alice"}) as r:
            assert r.status == 200


async def test_per_key_rate_limit(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_API_KEYS": "alice:sk-a",
                                "ROUTER_RATE_LIMIT_RPM": "2"})
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    auth = {"Authorization": "Bearer sk-a"}
    statuses = [(await post(router, body, auth))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    _, payload, headers = await post(router, body, auth)
    assert_openai_error(payload, "2 requests per minute", "alice")
    assert int(headers["Retry-After"]) > 0


async def test_no_backend_configured_is_503_saying_why(make_router):
    router = await make_router({"LOCAL_3070_URL": "http://127.0.0.1:9"})
    status, payload, _ = await post(router, b'{"messages": [{"role": "user", "content": "hi"}]}')
    assert status == 503
    assert_openai_error(payload, "3070: down", "3090: not configured", "opencode: not configured")
    [row] = await decision_rows(router)
    assert row.status_code == 503 and row.backend is None
