"""OPENCODE_RPM / OPENCODE_CONCURRENCY through the router (OpenAI-compatible opencode kind)."""

from __future__ import annotations

import openai
import pytest

from router.backends.base import Backend
from router.backends.factory import build_topology, make_client
from router.backends.limits import LimitedBackend
from router.backends.opencode import OpenCodeBackend
from router.settings import Settings
from tests.conftest import backend_env


async def test_rpm_limit_answers_429_with_retry_after(make_router, upstreams):
    router = await make_router({**backend_env(upstreams, "opencode"), "OPENCODE_RPM": "1"})
    await router.service.registry.check_all()
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="glm", messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.chat.completions.create(model="glm",
                                              messages=[{"role": "user", "content": "b"}])
    assert int(err.value.response.headers["retry-after"]) > 0
    assert "OPENCODE_RPM" in err.value.message


async def clients_of(settings: Settings) -> list[Backend]:
    """The clients `serve` would build for the environment's lab."""
    topology = await build_topology(settings, {})
    return [make_client(spec, settings) for spec in topology.backends.values()]


@pytest.mark.parametrize("api", ["openai", "opencode"])
async def test_factory_wraps_both_opencode_kinds(api):
    settings = Settings.from_env({"LOCAL_3070_URL": "", "OPENCODE_URL": "http://127.0.0.1:9",
                                  "OPENCODE_API": api, "OPENCODE_CONCURRENCY": "2"})
    [backend] = await clients_of(settings)
    assert isinstance(backend, LimitedBackend) and backend.concurrency == 2
    assert backend.name == "opencode"
    assert isinstance(backend.inner, OpenCodeBackend) is (api == "opencode")
    await backend.close()


async def test_no_limits_no_wrapper():
    settings = Settings.from_env({"LOCAL_3070_URL": "", "OPENCODE_URL": "http://127.0.0.1:9",
                                  "OPENCODE_API": "opencode"})
    [backend] = await clients_of(settings)
    assert isinstance(backend, OpenCodeBackend)
    assert backend.resolve_model(None, ()) == settings.opencode_glm_model
    assert backend.resolve_model("claude", ()) == settings.opencode_claude_model
    assert backend.resolve_model("moonshot/kimi-k2", ()) == "moonshot/kimi-k2"
    await backend.close()
