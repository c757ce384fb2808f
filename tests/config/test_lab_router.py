"""A router driven by a home-lab file, against a real server of each kind: an OpenAI-compatible
fake, a real inference agent process, and an Anthropic-speaking fake (the OpenCode kind runs
against the real `opencode serve` in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import decision_rows
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually

ADMIN = {"Authorization": "Bearer admin-token"}
ZAI_KEY = "zai-Sekr3t-key"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def zai():
    fake = await FakeUpstream("glm-4.7", 200_000).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def claude():
    fake = await FakeAnthropic(api_key="sk-ant-lab").start()
    yield fake
    await fake.stop()


def lab_file(tmp_path: Path, agent_url: str, zai: FakeUpstream, claude: FakeAnthropic) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(f"""
fallback = ["pc", "zai"]

[backends.pc]
kind = "agent"
url = "{agent_url}"
label = "Gaming PC"
gaming = true

[backends.zai]
kind = "openai"
url = "{zai.url}/v1"
label = "Z.ai"
api_key = "${{ZAI_KEY}}"
[backends.zai.defaults]
temperature = 0.6

[backends.claude]
kind = "anthropic"
url = "{claude.url}"
api_key = "${{CLAUDE_KEY}}"
explicit_only = true

[aliases]
glm = "zai:glm-4.7"
"claude-haiku-*" = "claude"

[[rules]]
when = {{ gaming_mode = true, force_big = false }}
to = ["zai"]
reason = "gaming_mode"

[[rules]]
to = ["pc", "zai"]
reason = "main"
""")
    return path


async def test_every_kind_routes_by_the_file(make_router, tmp_path, agent_url, zai, claude):
    path = lab_file(tmp_path, agent_url, zai, claude)
    router = await make_router({"ROUTER_CONFIG": str(path), "ZAI_KEY": ZAI_KEY,
                                "CLAUDE_KEY": "sk-ant-lab", "GAMING_PC_URL": "http://ignored:1",
                                "ROUTER_ADMIN_TOKEN": "admin-token"})
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http:
        # automatic: the real agent starts its fake vLLM on demand and answers
        main = await http.post("/v1/chat/completions", json={"messages": HELLO})
        assert main.status_code == 200, main.text
        assert (main.headers["x-routed-backend"], main.headers["x-route-reason"]) == ("pc", "main")
        # backend:model through an alias, with the backend's key and defaults
        glm = await http.post("/v1/chat/completions", json={"model": "glm", "messages": HELLO})
        assert (glm.headers["x-routed-backend"], glm.headers["x-routed-model"]) == ("zai", "glm-4.7")
        assert zai.requests[-1]["temperature"] == 0.6 and zai.requests[-1]["model"] == "glm-4.7"
        assert zai.headers[-1]["Authorization"] == f"Bearer {ZAI_KEY}"
        explicit = await http.post("/v1/chat/completions", json={
            "model": "zai:glm-4.7", "temperature": 0.1, "messages": HELLO})
        assert explicit.headers["x-route-reason"] == "explicit_model"
        assert zai.requests[-1]["temperature"] == 0.1  # the client's value wins over defaults
        # a glob alias to the anthropic kind: Chat Completions translated to Messages
        haiku = await http.post("/v1/chat/completions", json={
            "model": "claude-haiku-4-5-20251001", "messages": HELLO})
        assert haiku.status_code == 200, haiku.text
        assert haiku.headers["x-routed-backend"] == "claude"
        assert haiku.json()["choices"][0]["message"]["content"]
        assert claude.requests[-1]["messages"][0]["role"] == "user"
        # everything shows the configured names, and no secret
        status = (await http.get("/status")).json()
        assert {b["name"]: (b["label"], b["kind"]) for b in status["backends"]} == {
            "pc": ("Gaming PC", "agent"), "zai": ("Z.ai", "openai"), "claude": ("claude", "anthropic")}
        assert status["config"] == str(path) and ZAI_KEY not in str(status)
        models = (await http.get("/v1/models")).json()["data"]
        owners = {m["id"]: m["owned_by"] for m in models}
        assert owners["glm"] == "local-ai-router:zai" and owners["pc-model"] == "pc"
        assert 'backend="pc"' in (await http.get("/metrics")).text
        # gaming mode on the pc's real agent: automatic traffic goes to z.ai
        flipped = await http.post("/admin/gaming-mode", json={"enabled": True, "backend": "pc"},
                                  headers=ADMIN)
        assert flipped.json()["backends"] == {"pc": True}
        assert (await http.get(agent_url + "/status")).json()["gaming_mode"] is True
        gamed = await http.post("/v1/chat/completions", json={"messages": HELLO})
        assert (gamed.headers["x-routed-backend"], gamed.headers["x-route-reason"]) == ("zai", "gaming_mode")
        forced = await http.post("/v1/chat/completions", json={"messages": HELLO},
                                 headers={"X-Force-Big": "true"})
        assert forced.headers["x-routed-backend"] == "pc"  # the agent serves force-big only
        unknown = await http.post("/admin/gaming-mode", json={"enabled": True, "backend": "zai"},
                                  headers=ADMIN)
        assert unknown.status_code == 404
        assert "no gaming backend 'zai' (gaming backends: pc)" in unknown.json()["error"]["message"]
    rows = await decision_rows(router)
    assert [r.backend for r in rows] == ["pc", "zai", "zai", "claude", "zai", "pc"]
    assert all(ZAI_KEY not in repr(r) for r in rows)


async def test_a_failing_anthropic_key_falls_to_the_next_candidate(make_router, tmp_path, agent_url,
                                                                     zai, claude):
    path = lab_file(tmp_path, agent_url, zai, claude)
    router = await make_router({"ROUTER_CONFIG": str(path), "ZAI_KEY": ZAI_KEY,
                                "CLAUDE_KEY": "sk-ant-lab"})
    assert router.service.registry.states["claude"].healthy
    claude.fail_status = 401  # the key is revoked after the last health check
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http:
        answer = await http.post("/v1/chat/completions", json={"model": "claude", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-routed-backend"] == "pc"
    [row] = await decision_rows(router)
    assert row.fallback_attempts == 1 and "claude" in row.failures and "401" in row.failures


async def test_backend_variables_are_ignored_with_a_warning(make_router, tmp_path, zai, caplog):
    path = tmp_path / "lab.toml"
    path.write_text(f'[backends.zai]\nkind = "openai"\nurl = "{zai.url}"\n')
    router = await make_router({"ROUTER_CONFIG": str(path), "GAMING_PC_URL": "http://pc:1",
                                "OPENCODE_URL": "http://oc:2"})
    assert list(router.service.registry.states) == ["zai"]
    await eventually(lambda: router.service.registry.states["zai"].healthy)
    warned = {r.getMessage().split()[0] for r in caplog.records if "is set but ignored" in r.getMessage()}
    assert warned == {"GAMING_PC_URL", "OPENCODE_URL"}
