"""The `anthropic` backend kind: Claude through the operator's API key (Anthropic's Messages API).

Messages requests pass through natively (`apis = {"messages"}`); a Chat Completions request is
translated to Messages and the answer (JSON or SSE) back to Chat (router.wire.messages), so chat
and Responses clients reach Claude too. A refused key (401/403) is the operator's problem, not
the client's: it is reported as a retriable failure naming ANTHROPIC_API_KEY, so the next
candidate answers. 429 and 529 (overloaded) and 5xx fall back as well.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from router.backends.base import HealthReport, ModelInfo, StreamBroken, Upstream, UpstreamError
from router.backends.openai import error_detail, response_chunks
from router.wire import messages as msg
from router.wire import messages_upstream as upstream

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-5"
CONTEXT_WINDOW = 200_000  # every current Claude model; /v1/models does not say
RETRIABLE_STATUSES = frozenset({401, 403, 408, 429, 500, 502, 503, 504, 529})


class AnthropicBackend:
    """Claude over HTTPS with an API key. Concurrent-safe; `close()` once at shutdown."""

    apis: frozenset[str] = frozenset({"messages"})

    def __init__(self, name: str, url: str | None = None, api_key: str = "", *,
                 models: tuple[str, ...] = (), connect_timeout: float = 5.0,
                 read_timeout: float = 300.0, health_timeout: float = 5.0) -> None:
        self.name = name
        self.url = (url or DEFAULT_URL).rstrip("/").removesuffix("/v1")
        self._api_key = api_key
        self._models = models
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout,
                                              sock_connect=connect_timeout, sock_read=read_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
                timeout=self._timeout, auto_decompress=True)
        return self._session

    def _headers(self, beta: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "x-api-key": self._api_key,
                   "anthropic-version": ANTHROPIC_VERSION}
        if beta:
            headers["anthropic-beta"] = beta
        return headers

    async def send(self, path: str, body: dict[str, object], *, stream: bool,
                   headers: dict[str, str], header_timeout: float | None = None) -> Upstream:
        """`/v1/messages` as sent; `/v1/chat/completions` translated both ways. Other paths
        (completions, embeddings) are refused as retriable, so another backend serves them.
        (`header_timeout` is not needed: the API answers its status at once.)"""
        beta = None
        if path == "/v1/messages":
            outgoing: dict[str, object] = body
            # A native body may use beta fields (Claude Code's context management, say); they
            # need the client's `anthropic-beta` header, when the router passes it on.
            beta = headers.get("anthropic-beta")
        elif path == "/v1/chat/completions":
            try:
                outgoing = upstream.chat_to_messages_request(body)
            except msg.BAD_SHAPE as exc:  # the client's chat body, malformed past its checks
                text = f"The request could not be translated for Anthropic ({exc})."
                raise UpstreamError(f"backend {self.name}: {text}", status=400, retriable=False,
                                    body=orjson.dumps({"error": {
                                        "message": text, "type": "invalid_request_error",
                                        "param": None, "code": None}})) from None
        else:
            raise UpstreamError(f"backend {self.name} (Anthropic) does not serve {path}")
        try:
            response = await self.session.post(self.url + "/v1/messages",
                                               data=orjson.dumps(outgoing),
                                               headers=self._headers(beta))
        except TimeoutError:
            raise UpstreamError(f"backend {self.name} timed out before answering") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(
                f"backend {self.name} refused the connection ({exc.os_error})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"backend {self.name} failed: {type(exc).__name__}: {exc}") from None
        if response.status >= 400:
            try:
                payload = await response.read()
            except (TimeoutError, aiohttp.ClientError):
                payload = b""
            finally:
                response.release()
            raise self._status_error(response.status, payload, response.headers.get("retry-after"),
                                     translate=path != "/v1/messages")

        async def release() -> None:
            response.release()

        content_type = response.headers.get("Content-Type", "application/json")
        chunks = response_chunks(self.name, response, stream)
        if path == "/v1/chat/completions":
            model = str(body.get("model") or "")
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            chunks = (_to_chat_stream(self.name, chunks, model, include_usage) if stream
                      else _to_chat_whole(self.name, chunks))
        return Upstream(status=response.status, content_type=content_type, chunks=chunks,
                        release=release)

    def _status_error(self, status: int, body: bytes, retry_after: str | None, *,
                      translate: bool) -> UpstreamError:
        detail = _error_message(body)
        if status in (401, 403):
            return UpstreamError(
                f"backend {self.name}: Anthropic refused the operator's ANTHROPIC_API_KEY "
                f"(HTTP {status}{': ' + detail if detail else ''}); the request itself is fine",
                status=status, retriable=True, body=body)
        if status == 529:
            message = f"backend {self.name}: Anthropic is overloaded (HTTP 529)"
        else:
            message = f"backend {self.name} answered HTTP {status}" + (
                f": {detail}" if detail else "")
        if translate and body and status not in RETRIABLE_STATUSES:
            # A client error for a chat request goes back in the OpenAI error shape.
            kind = msg.error_type(status)
            body = orjson.dumps({"error": {"message": detail or message, "type": kind,
                                           "param": None, "code": None}})
        return UpstreamError(message, status=status, retriable=status in RETRIABLE_STATUSES,
                             body=body, retry_after=retry_after)

    async def check_health(self) -> HealthReport:
        started = time.perf_counter()
        try:
            async with self.session.get(self.url + "/v1/models", headers=self._headers(),
                                        timeout=self._health_timeout) as resp:
                payload = await resp.read()
                if resp.status in (401, 403):
                    return HealthReport(False, error=(
                        f"Anthropic refused ANTHROPIC_API_KEY (GET /v1/models answered HTTP "
                        f"{resp.status})"))
                if resp.status != 200:
                    return HealthReport(False, error=f"GET /v1/models answered HTTP {resp.status}")
                listed = orjson.loads(payload)
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            return HealthReport(False,
                                error=f"health check failed: {str(exc) or type(exc).__name__}")
        ids = self._models or tuple(
            str(m["id"]) for m in (listed.get("data") or []) if isinstance(m, dict) and "id" in m
        ) if isinstance(listed, dict) else self._models
        latency = round((time.perf_counter() - started) * 1000, 2)
        return HealthReport(True, models=tuple(ModelInfo(i, CONTEXT_WINDOW) for i in ids),
                            latency_ms=latency)

    def resolve_model(self, hint: str | None, models: tuple[ModelInfo, ...]) -> str:
        """A served id or any `claude-…` id as asked; otherwise the first configured model, or
        DEFAULT_MODEL (not the first listed one: Anthropic lists its newest, priciest first)."""
        ids = [m.id for m in models]
        if hint and (hint in ids or hint.startswith("claude-")):
            return hint
        return self._models[0] if self._models else DEFAULT_MODEL

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error_message(body: bytes) -> str:
    """Anthropic's `error.message` (the same place as OpenAI's), else the start of the body."""
    message = error_detail(body)[1]
    return message if message is not None else body[:200].decode("utf-8", "replace").strip()


async def _to_chat_stream(name: str, chunks: AsyncIterator[bytes], model: str,
                          include_usage: bool) -> AsyncIterator[bytes]:
    """Anthropic SSE -> Chat SSE; an Anthropic error event (say, overloaded) is StreamBroken, so
    before the first byte the router falls back and after it the client gets an error event."""
    stream = upstream.MessagesToChatStream(model, include_usage)
    async for chunk in chunks:
        try:
            out = stream.feed(chunk)
        except orjson.JSONDecodeError:
            raise StreamBroken(f"backend {name} sent an event that is not JSON") from None
        if out:
            yield out
        if stream.failed:
            raise StreamBroken(f"backend {name} sent an error event: {stream.failed}")
    if not stream.done:
        raise StreamBroken(f"backend {name} ended the stream before message_stop")


async def _to_chat_whole(name: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    raw = b"".join([chunk async for chunk in chunks])
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StreamBroken(f"backend {name} sent an answer that is not JSON") from None
    if not isinstance(answer, dict) or answer.get("type") == "error":
        raise StreamBroken(f"backend {name} sent an unusable answer: {raw[:200]!r}")
    try:
        translated = upstream.messages_to_chat_response(answer)
    except msg.BAD_SHAPE as exc:
        raise StreamBroken(
            f"backend {name} sent an answer of an unexpected shape ({exc})") from None
    yield orjson.dumps(translated)
