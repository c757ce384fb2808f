"""The opencode backend: Claude and GLM through an OpenCode server's session API (`opencode serve`).

Each request gets a fresh OpenCode session (concurrent messages to one session get mixed up),
which is deleted when the answer is released. The flow for one request:

1. check the model against OpenCode's provider catalog (OpenCode reports an unknown model as an
   opaque HTTP 500, so the router answers 404 itself);
2. `POST /session` (with a title, so OpenCode does not spend a provider call naming it);
3. subscribe to `GET /event`, then `POST /session/{id}/prompt_async` with the relay agent,
   the client's system prompt in `system`, tools off, and the history as a transcript part;
4. translate the session's events (`message.part.delta`, `message.updated`, `session.status`,
   `session.error`, `session.idle`) into an OpenAI answer (see `opencode_mapping`).

`send()` returns once the first text arrives (or the whole answer, for stream=False); a provider
error before that raises `UpstreamError` with the mapped status and an OpenAI-shaped body. When
OpenCode announces its own retry of a provider error, the request gives up at once (retriable),
so the router falls back instead of sitting through OpenCode's backoff.

The relay agent: OpenCode puts an agent's own prompt in place of its ~9,600-character
coding-agent prompt ("You are opencode, an interactive CLI tool..."); a message's `system` field
is only appended after it. So the router needs its `router-relay` agent (`relay_agent_config()`)
and installs it itself, through OpenCode's API, when `GET /agent` does not list it: `PATCH
/global/config` (OpenCode 1.18 applies it at once and keeps it in its global opencode.jsonc; the
project-scoped `PATCH /config` of 1.18 writes a `config.json` that OpenCode never reads, so it is
not used). Nobody edits OpenCode's config by hand. When the agent still is not listed (an older
OpenCode, a config that disables it), every request is refused with a 503 naming the fix (not
retriable: the backend stays routable so that a client asking for it reads the fix instead of a
bare "down"), and the reason is logged: it never relays with OpenCode's coding-agent prompt.

Health: `GET /global/health`, then `GET /config/providers` and `GET /agent` to see that the
configured models exist and the relay agent is installed. A provider that refused its login
(401) keeps the backend unhealthy, with the reason in `last_error`, until a probe succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from router.backends.base import HealthReport, ModelInfo, StreamBroken, Upstream, UpstreamError
from router.backends.opencode_mapping import (
    LOGIN_HINT,
    RELAY_AGENT,
    ChunkEncoder,
    Delta,
    Done,
    Failure,
    Out,
    PromptError,
    SessionEvents,
    agent_missing,
    build_prompt,
    completion_body,
    relay_agent_config,
)
from router.settings import Settings

log = logging.getLogger(__name__)

AUTH_PROBE_INTERVAL = 60.0
CATALOG_TTL = 30.0
AGENT_INSTALL_INTERVAL = 60.0
"""After a failed install of the relay agent, try again at most this often (seconds)."""


class OpenCodeBackend:
    """An OpenCode server. Concurrent-safe (one session per request); `close()` once at shutdown."""

    def __init__(self, settings: Settings, *, agent: str = RELAY_AGENT, retry_limit: int = 0,
                 health_timeout: float = 5.0) -> None:
        assert settings.opencode_url
        self.name = "opencode"
        self.url = settings.opencode_url.rstrip("/")
        self.hints = {"glm": settings.opencode_glm_model, "claude": settings.opencode_claude_model}
        self.agent = agent
        self.retry_limit = retry_limit
        self._timeout = aiohttp.ClientTimeout(total=None, connect=settings.connect_timeout,
                                              sock_connect=settings.connect_timeout,
                                              sock_read=settings.read_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout)
        self._auth: dict[str, str] = {}
        if settings.opencode_api_key:  # OPENCODE_SERVER_PASSWORD of the OpenCode server
            token = base64.b64encode(f"opencode:{settings.opencode_api_key}".encode()).decode()
            self._auth = {"Authorization": f"Basic {token}"}
        self._session: aiohttp.ClientSession | None = None
        self._catalog: dict[str, ModelInfo] = {}
        self._catalog_at = 0.0
        self._agent_ok: bool | None = None
        self._agent_why: str | None = None  # why the relay agent could not be installed
        self._agent_tried = float("-inf")
        self._agent_lock = asyncio.Lock()
        self._auth_failures: dict[str, str] = {}  # provider id -> message
        self._last_probe = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers=self._auth)
        return self._session

    # -- models ----------------------------------------------------------------------------

    def resolve_model(self, hint: str | None, models: tuple[ModelInfo, ...]) -> str:
        """"glm"/None and "claude" map to the configured "provider/model"; "p/m" is used as is."""
        if hint is None or hint in ("glm", "opencode"):
            return self.hints["glm"]
        if hint in self.hints:
            return self.hints[hint]
        if "/" in hint or hint in {m.id for m in models}:
            return hint
        return self.hints["glm"]

    async def _json(self, path: str, timeout: aiohttp.ClientTimeout | None = None) -> Any:
        async with self.session.get(self.url + path, timeout=timeout or self._health_timeout) as r:
            if r.status != 200:
                raise _HealthError(f"GET {path} answered HTTP {r.status}")
            return orjson.loads(await r.read())

    async def _refresh_catalog(self) -> None:
        payload = await self._json("/config/providers")
        catalog: dict[str, ModelInfo] = {}
        providers = payload.get("providers") if isinstance(payload, dict) else None
        for provider in providers or ():
            for model_id, model in (provider.get("models") or {}).items():
                limit = (model.get("limit") or {}).get("context") if isinstance(model, dict) else None
                catalog[f"{provider['id']}/{model_id}"] = ModelInfo(
                    f"{provider['id']}/{model_id}", int(limit) if limit else None)
        self._agent_ok = self._lists_agent(await self._json("/agent"))
        if not self._agent_ok:
            await self._install_agent()
        self._catalog = catalog
        self._catalog_at = time.monotonic()

    def _lists_agent(self, agents: Any) -> bool:
        return isinstance(agents, list) and any(
            isinstance(a, dict) and a.get("name") == self.agent for a in agents)

    async def _install_agent(self) -> None:
        """Install the relay agent through `PATCH /global/config`; set `_agent_ok`/`_agent_why`.

        After a failed attempt, the next one waits AGENT_INSTALL_INTERVAL. Concurrent callers
        wait for the attempt in progress and then see its result (a fresh `GET /agent`), so one
        install is sent however many requests arrive first; an agent lost later (OpenCode
        restarted with another home) is installed again at the next catalog refresh."""
        async with self._agent_lock:
            if self._agent_why is not None \
                    and time.monotonic() - self._agent_tried < AGENT_INSTALL_INTERVAL:
                return
            self._agent_tried = time.monotonic()
            patch = orjson.dumps({"agent": {self.agent: relay_agent_config()}})
            try:
                if self._lists_agent(await self._json("/agent")):  # installed meanwhile
                    self._agent_ok, self._agent_why = True, None
                    return
                async with self.session.patch(self.url + "/global/config", data=patch,
                                              headers={"Content-Type": "application/json"},
                                              timeout=self._health_timeout) as resp:
                    status = resp.status
                    text = (await resp.read()).decode(errors="replace")[:200]
                if status != 200:
                    why = f"PATCH /global/config answered HTTP {status}: {text}"
                elif self._lists_agent(await self._json("/agent")):
                    self._agent_ok, self._agent_why = True, None
                    log.info("installed the %r agent in OpenCode's global config at %s "
                             "(PATCH /global/config)", self.agent, self.url)
                    return
                else:
                    why = ("PATCH /global/config was accepted, but GET /agent still does not "
                           "list it; a project config may disable it")
            except (TimeoutError, aiohttp.ClientError, _HealthError,
                    orjson.JSONDecodeError) as exc:
                why = f"PATCH /global/config failed: {str(exc) or type(exc).__name__}"
            if why != self._agent_why:
                log.error("%s", agent_missing(self.agent, self.url, why).message)
            self._agent_why = why

    # -- sending ---------------------------------------------------------------------------

    async def send(self, path: str, body: dict[str, object], *, stream: bool,
                   headers: dict[str, str], header_timeout: float | None = None) -> Upstream:
        if path != "/v1/chat/completions":
            raise _failure(Failure(404, f"The opencode backend serves only /v1/chat/completions, "
                                        f"not {path}.", True, "unsupported_endpoint"))
        model = str(body.get("model") or self.hints["glm"])
        try:
            prompt = build_prompt(body)
        except PromptError as exc:
            raise _failure(Failure(400, f"{exc}.", retriable=True, code="invalid_request")) from None
        await self._check_model(model)
        if not self._agent_ok:  # never relay with OpenCode's coding-agent prompt
            raise _failure(self._agent_refusal())
        provider_id, _, model_id = model.partition("/")
        message: dict[str, Any] = {"model": {"providerID": provider_id, "modelID": model_id},
                                   "agent": self.agent, "parts": prompt.parts,
                                   "tools": {"*": False}}
        if prompt.system:
            message["system"] = prompt.system
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        call = _Call(self, model, headers.get("X-Request-ID", ""))
        try:
            first = await call.start(message)
            if isinstance(first, Failure):
                self._note_failure(model, first)
                raise _failure(first)
        except BaseException:
            call.cleanup_soon()
            raise
        self._auth_failures.pop(provider_id, None)
        if stream:
            return Upstream(status=200, content_type="text/event-stream",
                            chunks=call.sse(first, ChunkEncoder(model, include_usage)),
                            release=call.release, model=model)
        try:
            payload = await call.collect(first)
        except BaseException:
            call.cleanup_soon()
            raise
        if isinstance(payload, Failure):
            call.cleanup_soon()
            self._note_failure(model, payload)
            raise _failure(payload)
        return Upstream(status=200, content_type="application/json", chunks=_once(payload),
                        release=call.release, model=model)

    async def _check_model(self, model: str) -> None:
        if not self._catalog or time.monotonic() - self._catalog_at > CATALOG_TTL \
                or model not in self._catalog:
            try:
                await self._refresh_catalog()
            except (TimeoutError, aiohttp.ClientError, _HealthError, orjson.JSONDecodeError) as exc:
                raise UpstreamError(f"backend opencode cannot list its providers: {exc}") from None
        if model not in self._catalog:
            provider = model.partition("/")[0]
            known = sorted({m.partition("/")[0] for m in self._catalog})
            if provider not in known:
                why = (f"OpenCode has no provider {provider!r} (it has: {', '.join(known) or 'none'}); "
                       f"{LOGIN_HINT}, or fix OPENCODE_GLM_MODEL / OPENCODE_CLAUDE_MODEL.")
            else:
                why = (f"OpenCode's provider {provider!r} has no model {model.partition('/')[2]!r}; "
                       "fix OPENCODE_GLM_MODEL / OPENCODE_CLAUDE_MODEL (format providerID/modelID).")
            raise _failure(Failure(404, f"The model {model} is not available: {why}", False,
                                   "model_not_found"))

    def _agent_refusal(self) -> Failure:
        return agent_missing(self.agent, self.url, self._agent_why or "GET /agent does not list it")

    def _note_failure(self, model: str, failure: Failure) -> None:
        if failure.status == 401:
            self._auth_failures[model.partition("/")[0]] = failure.message

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- health ----------------------------------------------------------------------------

    async def check_health(self) -> HealthReport:
        started = time.perf_counter()
        try:
            health = await self._json("/global/health")
            if not isinstance(health, dict) or health.get("healthy") is not True:
                return HealthReport(False, error=f"OpenCode reports itself unhealthy: {health}")
            await self._refresh_catalog()
        except (TimeoutError, aiohttp.ClientError, _HealthError, orjson.JSONDecodeError) as exc:
            return HealthReport(False, error=f"health check failed: {str(exc) or type(exc).__name__}")
        if self._agent_ok and self._auth_failures \
                and time.monotonic() - self._last_probe >= AUTH_PROBE_INTERVAL:
            await self._probe_auth()
        problems: list[str] = []
        models: list[ModelInfo] = []
        for alias, model in self.hints.items():
            provider = model.partition("/")[0]
            if model not in self._catalog:
                problems.append(f"{alias} model {model} is not in OpenCode's providers "
                                f"(not logged in, or a wrong OPENCODE_{alias.upper()}_MODEL)")
            elif provider in self._auth_failures:
                problems.append(f"{alias}: {self._auth_failures[provider]}")
            else:
                models.append(self._catalog[model])
        latency = round((time.perf_counter() - started) * 1000, 2)
        if not models:
            return HealthReport(False, error="; ".join(problems), latency_ms=latency)
        if problems:
            log.warning("backend opencode is partly usable: %s", "; ".join(problems))
        return HealthReport(True, models=tuple(models), latency_ms=latency)

    async def _probe_auth(self) -> None:
        """Send a one-word prompt for each provider whose login failed; clear it if it answers."""
        self._last_probe = time.monotonic()
        for provider in list(self._auth_failures):
            model = next((m for m in self.hints.values() if m.startswith(provider + "/")), None)
            if model is None:
                self._auth_failures.pop(provider, None)
                continue
            call = _Call(self, model, "health-probe")
            try:
                first = await asyncio.wait_for(call.start({
                    "model": {"providerID": provider, "modelID": model.partition("/")[2]},
                    "parts": [{"type": "text", "text": "Reply with: ok"}],
                    "tools": {"*": False}, "agent": self.agent}),
                    30)
            except (TimeoutError, UpstreamError, aiohttp.ClientError, StreamBroken):
                first = None
            finally:
                await asyncio.shield(call.release())
            if isinstance(first, (Delta, Done)):
                self._auth_failures.pop(provider, None)
            elif isinstance(first, Failure) and first.status == 401:
                self._auth_failures[provider] = first.message

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._session is not None:
            await self._session.close()


class _HealthError(Exception):
    pass


def _failure(failure: Failure) -> UpstreamError:
    return UpstreamError(failure.message, status=failure.status, retriable=failure.retriable,
                         body=failure.body)


async def _once(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


class _Call:
    """One request: its session, its event subscription and the translator. Used by one task."""

    def __init__(self, backend: OpenCodeBackend, model: str, request_id: str) -> None:
        self.backend = backend
        self.model = model
        self.request_id = request_id
        self.session_id: str | None = None
        self.events: aiohttp.ClientResponse | None = None
        self.translator: SessionEvents | None = None
        self.pending: list[Out] = []
        self._released = False

    async def _post(self, path: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        b = self.backend
        try:
            return await b.session.post(b.url + path, data=orjson.dumps(payload),
                                        headers={"Content-Type": "application/json"})
        except TimeoutError:
            raise UpstreamError("backend opencode timed out before answering") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(f"backend opencode refused the connection ({exc.os_error})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"backend opencode failed: {type(exc).__name__}: {exc}") from None

    async def start(self, message: dict[str, Any]) -> Out:
        """Create the session, subscribe, send the prompt; return the first output."""
        b = self.backend
        resp = await self._post("/session", {"title": f"local-ai-router {self.request_id}".strip()})
        async with resp:
            if resp.status != 200:
                raise UpstreamError(f"backend opencode could not create a session "
                                    f"(HTTP {resp.status})", status=502)
            self.session_id = str(orjson.loads(await resp.read())["id"])
        self.translator = SessionEvents(self.session_id, self.model, b.retry_limit)
        try:
            self.events = await b.session.get(b.url + "/event",
                                              headers={"Accept": "text/event-stream"})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(f"backend opencode event stream failed: {exc}") from None
        if self.events.status != 200:
            raise UpstreamError(f"backend opencode event stream answered HTTP {self.events.status}")
        # Wait for server.connected so no event of our prompt is missed.
        async for event in self._raw_events():
            if event.get("type") == "server.connected":
                break
        resp = await self._post(f"/session/{self.session_id}/prompt_async", message)
        async with resp:
            if resp.status >= 400:
                text = (await resp.read()).decode(errors="replace")[:500]
                raise UpstreamError(f"backend opencode refused the prompt (HTTP {resp.status}): "
                                    f"{text}", status=502)
        return await self.next()

    async def _raw_events(self) -> AsyncIterator[dict[str, Any]]:
        assert self.events is not None
        try:
            async for line in self.events.content:
                if not line.startswith(b"data:"):
                    continue
                try:
                    event = orjson.loads(line[5:].strip())
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    yield event
        except TimeoutError:
            raise StreamBroken("backend opencode stopped sending events (read timeout)") from None
        except aiohttp.ClientError as exc:
            raise StreamBroken(f"backend opencode event stream failed: {exc}") from None

    async def next(self) -> Out:
        """The next output of the translator. Raises StreamBroken if the event stream ends."""
        assert self.translator is not None
        if self.pending:
            return self.pending.pop(0)
        async for event in self._raw_events():
            outs = self.translator.feed(event)
            if outs:
                self.pending.extend(outs[1:])
                return outs[0]
        raise StreamBroken("backend opencode closed its event stream before the answer finished")

    async def collect(self, first: Out) -> bytes | Failure:
        text: list[str] = []
        reasoning: list[str] = []
        out = first
        while True:
            if isinstance(out, Failure):
                return out
            if isinstance(out, Done):
                return completion_body(self.model, "".join(text), "".join(reasoning), out)
            (text if out.kind == "text" else reasoning).append(out.text)
            try:
                out = await self.next()
            except StreamBroken as exc:
                return Failure(502, str(exc), True, "upstream_error")

    async def sse(self, first: Out, encoder: ChunkEncoder) -> AsyncIterator[bytes]:
        out = first
        yield encoder.start() + (encoder.delta(out) if isinstance(out, Delta) else b"")
        while not isinstance(out, Done):
            out = await self.next()
            if isinstance(out, Failure):
                raise StreamBroken(out.message)
            if isinstance(out, Delta):
                yield encoder.delta(out)
        yield encoder.done(out)

    async def release(self) -> None:
        await self._cleanup()

    def cleanup_soon(self) -> None:
        """Clean up without awaiting (safe inside a cancelled task)."""
        self.backend._spawn(self._cleanup())

    async def _cleanup(self) -> None:
        if self._released:
            return
        self._released = True
        if self.events is not None:
            self.events.close()
        if self.session_id is None:
            return
        b = self.backend
        finished = self.translator is not None and self.translator.finished
        try:
            if not finished:
                async with b.session.post(f"{b.url}/session/{self.session_id}/abort",
                                          timeout=b._health_timeout):
                    pass
            async with b.session.delete(f"{b.url}/session/{self.session_id}",
                                        timeout=b._health_timeout) as resp:
                if resp.status >= 400:
                    log.warning("could not delete OpenCode session %s: HTTP %s",
                                self.session_id, resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("could not clean up OpenCode session %s: %s", self.session_id, exc)
