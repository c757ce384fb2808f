"""The one seam between the OpenAI backend and the network: `Transport.handle(request)`.

Like httpx's `handle_async_request`: a transport sends one POST and returns an `Exchange` once
the status and headers are in; the body is read with `next_chunk()` (b"" at the end) and the
connection given back with `release()`. Every transport raises the same exceptions, those of
`router.backends.http1` (`ConnectFailed`, `ConnectionLost`, `HTTPError`) and `TimeoutError`,
so the backend maps failures to `UpstreamError` / `StreamBroken` in one place.

- `Http1Transport`: the pooled keep-alive HTTP/1.1 client (plain http:// upstreams).
- `AiohttpTransport`: aiohttp's client (https://, credentials in the URL, query strings).
- tests/fakes/transport.py: a scripted fake for unit tests of the backend's error mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
from yarl import URL

from router.backends import http1


class Exchange(Protocol):
    """A response whose status and headers are in. Read the body once; always `release()`."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (lower-case names are found)."""
        ...

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call, waiting for some; b"" at the end."""
        ...

    def release(self) -> None:
        """Give the connection back (or close it). Idempotent."""
        ...


class Transport(Protocol):
    """Sends one request at a time per call; safe to use from many tasks at once (loop-only)."""

    async def handle(self, path: str, headers: dict[str, str], body: bytes,
                     header_timeout: float | None = None) -> Exchange:
        """POST `body` to `path` (relative to the transport's base URL) and wait for the status,
        at most `header_timeout` seconds (default: the read timeout).

        Raises http1.ConnectFailed, http1.HTTPError or TimeoutError.
        """
        ...

    async def close(self) -> None:
        ...


class Http1Transport:
    """The pooled HTTP/1.1 client; its responses are exchanges as they are."""

    def __init__(self, base: URL, *, connect_timeout: float, read_timeout: float) -> None:
        assert base.host is not None and base.port is not None
        self._pool = http1.Pool(base.host, base.port, connect_timeout=connect_timeout,
                                read_timeout=read_timeout)
        self._prefix = base.raw_path.rstrip("/")

    async def handle(self, path: str, headers: dict[str, str], body: bytes,
                     header_timeout: float | None = None) -> Exchange:
        return await self._pool.request("POST", self._prefix + path, headers, body,
                                        header_timeout)

    async def close(self) -> None:
        self._pool.close()

    @staticmethod
    def suits(base: URL) -> bool:
        """Whether the pooled client can reach `base` (plain http, no credentials or query)."""
        return (base.scheme == "http" and bool(base.host) and not base.user
                and not base.query_string and base.port is not None)


class _AiohttpExchange:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def next_chunk(self) -> bytes:
        try:
            return await self._response.content.readany()
        except TimeoutError:
            raise
        except aiohttp.ClientPayloadError as exc:
            raise http1.ConnectionLost(str(exc)) from None
        except aiohttp.ClientError as exc:
            raise http1.HTTPError(f"{type(exc).__name__}: {exc}") from None

    def release(self) -> None:
        self._response.release()


class AiohttpTransport:
    """aiohttp's client session, its failures translated to the http1 exceptions."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession], base: str) -> None:
        self._session = session  # the backend's lazily made session (also used for health)
        self._base = base
        self._urls: dict[str, URL] = {}

    async def handle(self, path: str, headers: dict[str, str], body: bytes,
                     header_timeout: float | None = None) -> Exchange:
        url = self._urls.get(path)
        if url is None:  # parse each endpoint's URL once, not per request
            url = self._urls[path] = URL(self._base + path)
        session = self._session()
        timeout = session.timeout
        if header_timeout is not None and (timeout.sock_read or 0) < header_timeout:
            # aiohttp has no separate wait for the status: the read timeout grows for this one
            timeout = aiohttp.ClientTimeout(total=timeout.total, connect=timeout.connect,
                                            sock_read=header_timeout,
                                            sock_connect=timeout.sock_connect)
        try:
            response = await session.post(url, data=body, headers=headers, timeout=timeout)
        except aiohttp.ClientConnectorError as exc:
            raise http1.ConnectFailed(exc.os_error) from None
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise http1.HTTPError(f"{type(exc).__name__}: {exc}") from None
        return _AiohttpExchange(response)

    async def close(self) -> None:
        """The session belongs to the backend, which closes it."""
