"""Build backend clients from the topology (the only place that knows every backend kind).

`build_topology` reads the home-lab file when `ROUTER_CONFIG` names one with a `[backends]`
table, else the environment's seed lab (detecting what `OPENCODE_URL` is). `make_client` turns
one `BackendSpec` into a client: `openai` and `agent` share the OpenAI client (an agent's
gaming mode is read from its `/status`), `opencode` is the session relay, `anthropic` speaks
Messages. `rpm` / `concurrency` wrap any of them in `LimitedBackend`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

import httpx

from router.backends.base import Backend
from router.backends.limits import LimitedBackend
from router.backends.openai import OpenAIBackend
from router.config import (
    BackendSpec,
    Topology,
    has_backends_table,
    ignored_backend_env,
    load_topology,
    seed_topology,
)
from router.settings import Settings, redact_url

log = logging.getLogger(__name__)


async def detect_opencode_kind(url: str, timeout: float = 5.0) -> str:
    """'opencode' when `url` is an OpenCode server (it serves /config), else 'openai'.

    An unreachable server is assumed to be OpenCode when its path has no /v1 (the usual
    `opencode serve` address), so a router started before OpenCode still picks the right kind.
    """
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url.rstrip("/") + "/config")
            if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
                return "opencode"
            response = await client.get(url.rstrip("/").removesuffix("/v1") + "/v1/models")
            if response.status_code in (200, 401, 403):
                return "openai"
    except httpx.HTTPError as exc:
        log.warning("could not reach OPENCODE_URL=%s to detect its kind: %s", redact_url(url), exc)
    return "openai" if url.rstrip("/").endswith("/v1") else "opencode"


async def build_topology(settings: Settings, environ: Mapping[str, str] | None = None) -> Topology:
    """The lab to route over: the `ROUTER_CONFIG` file's, or the environment's. Raises ConfigError."""
    env = os.environ if environ is None else environ
    path = env.get("ROUTER_CONFIG")
    if path and has_backends_table(path):
        for name in ignored_backend_env(env):
            log.warning("%s is set but ignored: %s declares the backends", name, path)
        return load_topology(path, settings, env)
    kind = settings.opencode_api
    if settings.opencode_url and kind == "auto":
        kind = await detect_opencode_kind(settings.opencode_url)
        log.info("OPENCODE_URL=%s is an %s API", redact_url(settings.opencode_url), kind)
    return seed_topology(settings, kind, settings.anthropic_api_key)


def make_client(spec: BackendSpec, settings: Settings) -> Backend:
    """A client for one configured backend (not yet health-checked)."""
    client: Backend
    if spec.kind == "opencode":
        from router.backends.opencode import OpenCodeBackend

        client = OpenCodeBackend(dataclasses.replace(
            settings, opencode_url=spec.url, opencode_api_key=spec.api_key,
            opencode_glm_model=spec.model_hints.get("glm", settings.opencode_glm_model),
            opencode_claude_model=spec.model_hints.get("claude", settings.opencode_claude_model)))
        client.name = spec.name
    elif spec.kind == "anthropic":
        from router.backends.anthropic import AnthropicBackend

        assert spec.api_key
        client = AnthropicBackend(spec.name, spec.url, spec.api_key, models=spec.models,
                                  connect_timeout=settings.connect_timeout,
                                  read_timeout=settings.read_timeout)
    else:
        client = OpenAIBackend(spec.name, spec.url, api_key=spec.api_key,
                               model_hints=dict(spec.model_hints),
                               connect_timeout=settings.connect_timeout,
                               read_timeout=settings.read_timeout,
                               gaming_status_url=spec.status_url if spec.gaming else None)
    if spec.rpm or spec.concurrency:
        client = LimitedBackend(client, spec.rpm, spec.concurrency)
    return client
