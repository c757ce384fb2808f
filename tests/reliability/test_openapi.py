"""GET /openapi.json describes the router's own API, and schemathesis checks the live router
against it: no 500s, every status, content type, header and body as documented."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from router.http.openapi import spec
from tests.conftest import backend_env

ST = Path(sys.executable).with_name("st")
ADMIN = "admin-token-for-schemathesis"


async def test_openapi_document_is_served(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    async with httpx.AsyncClient() as client:
        response = await client.get(router.url + "/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document == spec() and document["openapi"].startswith("3.")
    routes = {(r.method, r.resource.canonical) for r in router.app.router.routes()
              if r.method != "HEAD"}
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert routes == documented  # every route of the router is described, and nothing else


async def test_schemathesis_finds_no_failures_against_the_live_router(
        make_router, upstreams, tmp_path, caplog):
    """Every check but `not_a_server_error`, which fails any 5xx: a 503 "no backend can serve"
    is a documented answer (the fakes reject some schema-valid bodies, so backends go down).
    A 500 still fails the run: it is not documented, so `status_code_conformance` flags it."""
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": ADMIN},
                               max_body_bytes=64 * 1024)
    proc = await asyncio.create_subprocess_exec(
        str(ST), "run", router.url + "/openapi.json", "--checks", "all",
        "--exclude-checks", "not_a_server_error",
        "--max-examples", "25", "--seed", "7", "--workers", "1", "--phases", "examples,coverage,fuzzing",
        "--header", f"Authorization: Bearer {ADMIN}", "--request-timeout", "10",
        "--suppress-health-check", "all", "--no-color",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "No issues found" in text, text
    assert not [r for r in caplog.records if r.name.startswith("router") and r.levelno >= 40]
