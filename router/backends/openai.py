"""A backend that speaks the OpenAI HTTP API: vLLM, the inference agent, or any compatible API.

Data-plane requests go through one `Transport` (router/backends/transport.py): the pooled
keep-alive HTTP/1.1 client for http:// upstreams (aiohttp's client cost about a third of the
router's CPU under load), aiohttp's for https://, or a fake in tests; failures are mapped to
`UpstreamError` / `StreamBroken` here, once. Health checks use the aiohttp session, with a short
timeout. Chunks of a stream are yielded as they arrive, never re-buffered.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
from yarl import URL

from router.backends import http1
from router.backends.base import HealthReport, ModelInfo, StreamBroken, Upstream, UpstreamError
from router.backends.transport import AiohttpTransport, Exchange, Http1Transport, Transport

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class OpenAIBackend:
    """An OpenAI-compatible HTTP backend. Concurrent-safe; `close()` once at shutdown."""

    def __init__(self, name: str, url: str, *, api_key: str | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 300.0,
                 health_timeout: float = 5.0, gaming_status_url: str | None = None,
                 model_hints: dict[str, str] | None = None,
                 transport: Transport | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._base = self.url.removesuffix("/v1")
        self._api_key = api_key
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout,
                                              sock_connect=connect_timeout, sock_read=read_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout,
                                                     sock_connect=min(connect_timeout, health_timeout))
        self._gaming_status_url = gaming_status_url
        self._model_hints = model_hints or {}
        self._session: aiohttp.ClientSession | None = None
        base = URL(self._base)
        self._transport: Transport
        if transport is not None:
            self._transport = transport
        elif Http1Transport.suits(base):
            self._transport = Http1Transport(base, connect_timeout=connect_timeout,
                                             read_timeout=read_timeout)
        else:
            self._transport = AiohttpTransport(lambda: self.session, self._base)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  json_serialize=lambda o: orjson.dumps(o).decode(),
                                                  auto_decompress=False)
        return self._session

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        return {"Content-Type": "application/json", **extra, **self._auth}

    async def send(self, path: str, body: dict[str, object], *, stream: bool,
                   headers: dict[str, str], header_timeout: float | None = None) -> Upstream:
        try:
            exchange = await self._transport.handle(path, self._headers(headers),
                                                    orjson.dumps(body), header_timeout)
        except TimeoutError:
            raise UpstreamError(f"backend {self.name} timed out before answering") from None
        except http1.ConnectFailed as exc:
            raise UpstreamError(f"backend {self.name} refused the connection ({exc.os_error})") from None
        except http1.HTTPError as exc:
            raise UpstreamError(f"backend {self.name} failed: {type(exc).__name__}: {exc}") from None
        if exchange.status >= 400:
            try:
                payload = await _whole(exchange)
            except (TimeoutError, http1.HTTPError):
                payload = b""
            finally:
                exchange.release()
            raise _status_error(self.name, exchange.status, payload,
                                exchange.headers.get("retry-after"))

        async def release() -> None:
            exchange.release()

        return Upstream(status=exchange.status,
                        content_type=exchange.headers.get("content-type", "application/json"),
                        chunks=_Body(self.name, exchange, stream), release=release,
                        headers=exchange.headers)

    async def check_health(self) -> HealthReport:
        started = time.perf_counter()
        gaming_mode: bool | None = None
        start_timeout: float | None = None
        if self._gaming_status_url:
            gaming_mode, start_timeout = await self._host_status()
        try:
            async with self.session.get(self._base + "/v1/models", headers=self._headers({}),
                                        timeout=self._health_timeout) as resp:
                if resp.status != 200:
                    return HealthReport(False, error=f"GET /v1/models answered HTTP {resp.status}",
                                        gaming_mode=gaming_mode)
                payload = orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            message = str(exc) or type(exc).__name__
            return HealthReport(False, error=f"health check failed: {message}", gaming_mode=gaming_mode)
        models = tuple(
            ModelInfo(str(m["id"]), m.get("max_model_len") if isinstance(m.get("max_model_len"), int) else None)
            for m in (payload.get("data") or []) if isinstance(m, dict) and "id" in m
        ) if isinstance(payload, dict) else ()
        latency = (time.perf_counter() - started) * 1000
        return HealthReport(True, models=models, latency_ms=round(latency, 2),
                            gaming_mode=gaming_mode, start_timeout=start_timeout)

    async def _host_status(self) -> tuple[bool | None, float | None]:
        """The host's gaming mode and longest model start (an inference agent's `/status`);
        None for what it cannot tell (a plain vLLM has no /status): that says nothing about
        whether the backend can serve."""
        assert self._gaming_status_url
        try:
            async with self.session.get(self._gaming_status_url,
                                        timeout=self._health_timeout) as resp:
                if resp.status != 200:
                    return None, None
                status = orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError):
            return None, None
        if not isinstance(status, dict):
            return None, None
        gaming = status.get("gaming_mode")
        starts = [m["start_timeout"] for m in status.get("models") or ()
                  if isinstance(m, dict) and isinstance(m.get("start_timeout"), (int, float))]
        return (gaming if isinstance(gaming, bool) else None), (max(starts) if starts else None)

    def resolve_model(self, hint: str | None, models: tuple[ModelInfo, ...]) -> str:
        """A served id is used as is; an alias hint maps through `model_hints`, else the first model."""
        if hint:
            if any(m.id == hint for m in models):
                return hint
            if hint in self._model_hints:
                return self._model_hints[hint]
        if models:
            return models[0].id
        return hint or "default"

    async def close(self) -> None:
        await self._transport.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _status_error(name: str, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
    """The UpstreamError for an error status, whichever client received it."""
    code, detail = error_detail(body)
    message = f"backend {name} answered HTTP {status}" + (f": {detail[:300]}" if detail else "")
    return UpstreamError(message, status=status, retriable=status in RETRIABLE_STATUSES,
                         body=body, retry_after=retry_after, code=code)


def error_detail(body: bytes) -> tuple[str | None, str | None]:
    """`error.code` and `error.message` of an OpenAI error body (e.g. the agent's
    `model_start_failed` and why), else None for each."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None,
            message if isinstance(message, str) else None)


async def response_chunks(name: str, response: aiohttp.ClientResponse,
                          stream: bool) -> AsyncIterator[bytes]:
    """Raw body chunks as they arrive; a failure mid-body becomes StreamBroken."""
    try:
        if stream:
            async for chunk in response.content.iter_any():
                yield chunk
        else:
            yield await response.read()
    except TimeoutError:
        raise StreamBroken(f"backend {name} stopped sending (read timeout)") from None
    except aiohttp.ClientPayloadError as exc:
        raise StreamBroken(f"backend {name} dropped the connection mid-response ({exc})") from None
    except aiohttp.ClientError as exc:
        raise StreamBroken(f"backend {name} failed mid-response: {type(exc).__name__}: {exc}") from None


async def _whole(exchange: Exchange) -> bytes:
    parts = []
    while chunk := await exchange.next_chunk():
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Body:
    """Body chunks as they arrive (the whole body at once when not streaming); a failure
    mid-body becomes StreamBroken, whichever transport carried it.

    An iterator class rather than an async generator: the loop registers every async generator
    in a WeakSet on its first step, a cost paid on every request."""

    __slots__ = ("_done", "_exchange", "_name", "_stream")

    def __init__(self, name: str, exchange: Exchange, stream: bool) -> None:
        self._name, self._exchange, self._stream = name, exchange, stream
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            if not self._stream:
                self._done = True
                return await _whole(self._exchange)
            chunk = await self._exchange.next_chunk()
        except TimeoutError:
            raise StreamBroken(f"backend {self._name} stopped sending (read timeout)") from None
        except http1.ConnectionLost as exc:
            raise StreamBroken(f"backend {self._name} dropped the connection mid-response "
                               f"({exc})") from None
        except http1.HTTPError as exc:
            raise StreamBroken(f"backend {self._name} failed mid-response: "
                               f"{type(exc).__name__}: {exc}") from None
        if not chunk:
            self._done = True
            raise StopAsyncIteration
        return chunk
