"""Build the configured backends from settings (the only place that knows every backend kind)."""

from __future__ import annotations

import logging

import httpx

from router.backends.base import Backend
from router.backends.limits import LimitedBackend
from router.backends.openai import OpenAIBackend
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


async def make_backends(settings: Settings) -> list[Backend]:
    connect, read = settings.connect_timeout, settings.read_timeout
    backends: list[Backend] = []
    if settings.local_3070_url:
        backends.append(OpenAIBackend("3070", settings.local_3070_url, connect_timeout=connect,
                                      read_timeout=read))
    if settings.gaming_pc_url:
        backends.append(OpenAIBackend("3090", settings.gaming_pc_url, connect_timeout=connect,
                                      read_timeout=read,
                                      gaming_status_url=settings.resolved_gaming_mode_url))
    if settings.opencode_url:
        kind = settings.opencode_api
        if kind == "auto":
            kind = await detect_opencode_kind(settings.opencode_url)
            log.info("OPENCODE_URL=%s is an %s API", redact_url(settings.opencode_url), kind)
        hints = {"glm": settings.opencode_glm_model, "claude": settings.opencode_claude_model}
        inner: Backend
        if kind == "opencode":
            from router.backends.opencode import OpenCodeBackend

            inner = OpenCodeBackend(settings)
        else:
            inner = OpenAIBackend("opencode", settings.opencode_url,
                                  api_key=settings.opencode_api_key, model_hints=hints,
                                  connect_timeout=settings.connect_timeout,
                                  read_timeout=settings.read_timeout)
        if settings.opencode_rpm or settings.opencode_concurrency:
            inner = LimitedBackend(inner, settings.opencode_rpm, settings.opencode_concurrency)
        backends.append(inner)
    return backends
