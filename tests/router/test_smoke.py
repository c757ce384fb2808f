from __future__ import annotations

import openai

from tests.conftest import backend_env


async def test_chat_routes_small_request_to_3070(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused") as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
    completion = raw.parse()
    assert raw.headers["x-routed-backend"] == "3070"
    assert raw.headers["x-route-reason"] == "small_request"
    assert completion.choices[0].message.content.startswith("tok0")
    assert upstreams["3070"].requests[0]["model"] == "qwen2.5-7b-instruct-awq"
    await router.service.decisions.flush()
    assert router.service.decisions.written == 1
