"""Context windows over HTTP: agents ask for `max_tokens` 32000; a backend whose window holds the
prompt is used with `max_tokens` lowered to fit, and a prompt no window could hold is a 400."""

from __future__ import annotations

import httpx

from tests.conftest import backend_env, decision_rows
from tests.fakes.upstream import FakeUpstream

# ~3,000 cl100k tokens: "word " is one token each
PROMPT = "word " * 3000


async def test_max_tokens_is_lowered_to_what_the_window_leaves(make_router, upstreams):
    upstreams["3070"].max_model_len = 4096  # holds the prompt, not 32000 more
    router = await make_router(backend_env(upstreams, "3070"))
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json={
            "model": "small", "max_tokens": 32000,
            "messages": [{"role": "user", "content": PROMPT}]})
    assert answer.status_code == 200, answer.text
    clamped = int(answer.headers["x-max-tokens-clamped"])
    sent = upstreams["3070"].requests[-1]["max_tokens"]
    assert sent == clamped and 0 < clamped < 4096 - 3000
    [row] = await decision_rows(router)
    assert row.max_tokens_clamped == clamped and row.estimated_tokens >= 3000


async def test_a_small_max_tokens_that_fits_is_forwarded_as_sent(make_router, upstreams):
    upstreams["3070"].max_model_len = 4096
    router = await make_router(backend_env(upstreams, "3070"))
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json={
            "model": "small", "max_tokens": 200, "messages": [{"role": "user", "content": PROMPT}]})
    assert "x-max-tokens-clamped" not in answer.headers
    assert upstreams["3070"].requests[-1]["max_tokens"] == 200


async def test_a_prompt_no_configured_window_could_hold_is_a_400(make_router):
    small = await FakeUpstream("small-model", 2048).start()
    try:
        router = await make_router({"LOCAL_3070_URL": small.url})
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
            answer = await http.post("/v1/chat/completions", json={
                "max_tokens": 32000, "messages": [{"role": "user", "content": PROMPT}]})
        assert answer.status_code == 400  # not a 503 that clients would retry for a minute
        error = answer.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert "context window 2048" in error["message"]
        assert small.requests == []
        [row] = await decision_rows(router)
        assert row.status_code == 400
    finally:
        await small.stop()


async def test_when_only_a_down_backend_could_hold_it_the_answer_is_503(make_router, upstreams):
    upstreams["3070"].max_model_len = 2048
    router = await make_router(backend_env(upstreams, "3070", "3090"))
    await upstreams["3090"].stop()
    for _ in range(2):  # two failed checks mark it down
        await router.service.registry.check_all()
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": PROMPT}]})
    assert answer.status_code == 503
    assert "3090: down" in answer.json()["error"]["message"]


async def test_route_shows_an_opencode_session_skipped_for_a_request_with_tools(make_router, tmp_path):
    """An OpenCode session cannot run the client's tools: /v1/route says so."""
    oc = await FakeUpstream("glm", None).start()
    try:
        lab = tmp_path / "lab.toml"
        lab.write_text(f'[backends.oc]\nkind = "opencode"\nurl = "{oc.url}"\n')
        router = await make_router({"ROUTER_CONFIG": str(lab)})
        from router.backends.base import HealthReport
        router.service.registry.apply("oc", HealthReport(True))  # as if its checks passed
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
            decision = (await http.post("/v1/route", json={
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})).json()
        assert decision["backend"] is None
        assert decision["skipped"] == {"oc": "cannot run the client's tools (an OpenCode session)"}
    finally:
        await oc.stop()
