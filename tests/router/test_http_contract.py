"""The HTTP contract of SPEC.md ("Every /v1 response carries X-Request-ID"; errors are
OpenAI-shaped)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import backend_env

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize("method, path", [("GET", "/v1/chat/completions"),
                                          ("POST", "/v1/no-such-endpoint")])
async def test_v1_errors_from_the_middleware_carry_the_request_id(make_router, method, path):
    router = await make_router()
    async with aiohttp.ClientSession() as http, http.request(method, router.url + path,
                            headers={"X-Request-ID": "rid-123"}) as response:
        assert response.status in (404, 405)
        assert response.headers.get("X-Request-ID") == "rid-123"
        body = await response.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_unexpected_error_on_v1_carries_the_request_id(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"))

    def broken_status() -> None:
        raise RuntimeError("boom")

    router.service.registry.served_models = broken_status  # type: ignore[method-assign]
    async with aiohttp.ClientSession() as http, http.post(router.url + "/v1/route", json=HELLO,
                         headers={"X-Request-ID": "rid-500"}) as response:
        assert response.status == 500
        assert response.headers.get("X-Request-ID") == "rid-500"


async def test_backend_4xx_with_a_non_json_body_is_still_openai_shaped(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"))
    fake = upstreams["3070"]
    fake.mode = "status"
    fake.fail_status = 400

    from aiohttp import web

    async def html_400(_body):  # a reverse proxy in front of vLLM answering with HTML
        return web.Response(status=400, text="<html>Bad Request</html>", content_type="text/html")

    original = fake._take

    async def take(request):
        await original(request)
        return await html_400(None)

    fake._take = take  # type: ignore[method-assign]
    async with aiohttp.ClientSession() as http, \
            http.post(router.url + "/v1/chat/completions", json=HELLO) as response:
        assert response.status == 400
        assert response.content_type == "application/json"
        body = await response.json(content_type=None)
        assert set(body["error"]) == {"message", "type", "param", "code"}
