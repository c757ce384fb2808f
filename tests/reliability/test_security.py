"""No secret ever shows: not in logs (DEBUG, in-process and a real `serve`), /status, /metrics,
error bodies or the decision log; the client's key never reaches a backend; credentials in a
backend URL are redacted."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from tests.conftest import backend_env, decision_rows, free_port
from tests.reliability.conftest import HELLO, serve

API_KEY = "sk-alice-Zq8rT1secret"
ADMIN = "adm-Kp4vW9secret"
OPENCODE_KEY = "oc-Hx2mB7secret"
PC_PASSWORD = "pcpass-Ls5nD3secret"
MM_TOKEN = "mm-Rt6yU8secret"
SLASH_TOKEN = "slash-Gw3eQ1secret"
SECRETS = (API_KEY, ADMIN, OPENCODE_KEY, PC_PASSWORD, MM_TOKEN, SLASH_TOKEN)


def _env(upstreams) -> dict[str, str]:
    env = backend_env(upstreams)
    env.update({
        "GAMING_PC_URL": upstreams["3090"].url.replace("http://", f"http://pc:{PC_PASSWORD}@"),
        "ROUTER_API_KEYS": f"alice:{API_KEY},bob:sk-bob-other", "ROUTER_ADMIN_TOKEN": ADMIN,
        "OPENCODE_API_KEY": OPENCODE_KEY, "LOG_LEVEL": "DEBUG",
    })
    return env


async def _full_run(url: str, upstreams) -> list[str]:
    """Requests of every kind, good and bad; returns every response's headers and body."""
    seen: list[str] = []
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        async def call(method: str, path: str, **kw) -> httpx.Response:
            response = await client.request(method, path, **kw)
            seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
            return response

        for model in ("small", "3090", "glm"):
            for stream in (False, True):
                r = await call("POST", "/v1/chat/completions", headers=auth,
                               json={"model": model, "messages": HELLO, "stream": stream})
                assert r.status_code == 200, r.text
        assert (await call("POST", "/v1/completions", headers=auth,
                           json={"model": "small", "prompt": "hi"})).status_code == 200
        assert (await call("POST", "/v1/embeddings", headers=auth,
                           json={"model": "glm", "input": "hi"})).status_code == 200
        assert (await call("POST", "/v1/route", headers=auth, json={"messages": HELLO})).status_code == 200
        assert (await call("GET", "/v1/models", headers=auth)).status_code == 200
        # errors: wrong key, key in the wrong place, unknown model, bad JSON, wrong admin token
        assert (await call("POST", "/v1/chat/completions", json={"messages": HELLO},
                           headers={"Authorization": f"Bearer {API_KEY}x"})).status_code == 401
        assert (await call("POST", "/v1/chat/completions", json={"messages": HELLO},
                           headers={"Authorization": f"Basic {API_KEY}"})).status_code == 401
        assert (await call("POST", "/v1/chat/completions", headers=auth,
                           json={"model": "nope", "messages": HELLO})).status_code == 404
        assert (await call("POST", "/v1/chat/completions", headers=auth,
                           content=b'{"messages": "')).status_code == 400
        assert (await call("GET", "/admin/gaming-mode",
                           headers={"Authorization": f"Bearer {ADMIN}x"})).status_code == 401
        assert (await call("GET", "/admin/gaming-mode",
                           headers={"Authorization": f"Bearer {ADMIN}"})).status_code == 200
        # fallbacks and failures: the 3070 fails, then everything fails
        upstreams["3070"].mode = "status"
        assert (await call("POST", "/v1/chat/completions", headers=auth,
                           json={"messages": HELLO, "stream": True})).status_code == 200
        for fake in upstreams.values():
            fake.mode = "status"
        assert (await call("POST", "/v1/chat/completions", headers=auth,
                           json={"messages": HELLO})).status_code == 503
        for fake in upstreams.values():
            fake.mode = "ok"
        for path in ("/status", "/metrics", "/health", "/openapi.json"):
            assert (await call("GET", path)).status_code == 200
    return seen


def _assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} contains {leaked}"


def _assert_client_key_never_forwarded(upstreams) -> None:
    for name, fake in upstreams.items():
        assert fake.headers, name
        for headers in fake.headers:
            assert not any(API_KEY in v or "sk-bob" in v for v in headers.values()), (name, headers)
            if name == "opencode":  # its own key, for the backend's API
                assert headers["Authorization"] == f"Bearer {OPENCODE_KEY}"
            elif name == "3090":  # the URL's credentials, as HTTP basic auth
                assert headers["Authorization"].startswith("Basic ")
            else:
                assert "Authorization" not in headers


async def test_no_secret_in_logs_status_metrics_errors_or_decision_log(make_router, upstreams, caplog):
    caplog.set_level(logging.DEBUG)
    router = await make_router(_env(upstreams))
    seen = await _full_run(router.url, upstreams)
    rows = await decision_rows(router)
    await router.stop()
    # 11 routed, and 3 refused before routing: two bad keys (no client) and one bad body
    assert len(rows) == 14 and {r.client for r in rows} == {"alice", None}
    assert sum(r.reason == "rejected" for r in rows) == 3
    _assert_clean("responses", "\n".join(seen))
    _assert_clean("decision log", "\n".join(repr(r) for r in rows))
    for record in caplog.records:
        _assert_clean(f"log record {record.name}", record.getMessage() + (record.exc_text or ""))
    _assert_clean("captured log text", caplog.text)
    status = next(s for s in seen if '"decision_log"' in s)  # GET /status
    assert "http://***@127.0.0.1:" in status  # the 3090's URL, redacted
    _assert_client_key_never_forwarded(upstreams)


async def test_no_secret_in_a_real_serve_log_at_debug(tmp_path: Path, upstreams):
    env = {**_env(upstreams),
           # the bot is on, and its Mattermost is unreachable: /v1 must not care
           "MATTERMOST_URL": f"http://127.0.0.1:{free_port()}", "MATTERMOST_TOKEN": MM_TOKEN,
           "MATTERMOST_SLASH_TOKEN": SLASH_TOKEN, "MATTERMOST_TEAM": "home",
           "MATTERMOST_CHANNEL": "ops"}
    async with serve(tmp_path, env) as router:
        seen = await _full_run(router.url, upstreams)
        assert await router.terminate() == 0
        log = router.log
    assert "DEBUG" in log and "router ready" in log
    _assert_clean("serve log", log)
    _assert_clean("responses", "\n".join(seen))
    database = b"".join(p.read_bytes() for p in tmp_path.glob("serve.db*"))
    assert b"small_request" in database or b"explicit_model" in database
    for secret in SECRETS:
        assert secret.encode() not in database, secret
    _assert_client_key_never_forwarded(upstreams)
