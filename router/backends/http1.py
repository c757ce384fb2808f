"""A minimal keep-alive HTTP/1.1 client for one upstream host:port, over asyncio.

Why it exists: on the data plane aiohttp's client was about a third of the router's CPU under
load. The proxy needs only a small part of it: POST a body, get the status and headers, then the
body's chunks as they arrive. This module does that with an `asyncio.Protocol` per connection and
`httptools`' C parser (which also undoes chunked transfer encoding), and nothing else: no
redirects, no cookies, no decompression, no TLS (https upstreams keep aiohttp's client).

Contract:
- `Pool.request()` returns a `Response` once the status line and headers are in. Connections are
  reused only when the previous response ended cleanly and keep-alive applies. A reused
  connection that the server closed while idle is retried once on a fresh one, before any
  response byte (the server did not see the request).
- `Response.next_chunk()` returns the body's bytes as they arrive (b"" at the end);
  `Response.read()` the whole body. The socket stops being read while more than `HIGH_WATER`
  bytes wait for the consumer.
- `Response.release()` returns the connection to the pool when the body ended cleanly, and closes
  it otherwise: that is how a client that goes away stops the upstream's generation.
- Raises `ConnectFailed` (refused, unreachable; its `os_error` is the OSError), `ConnectTimeout`,
  `ReadTimeout` (no byte within `read_timeout`; both are TimeoutError), `ConnectionLost` (closed
  before the response ended) and `ProtocolError` (not parseable HTTP), all `HTTPError`s except
  the timeouts. A header value with a line break raises ValueError (as with aiohttp).
  Cancellation closes the connection.

Everything runs on one event loop; a `Pool` is safe to share between tasks of that loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from router.clock import WatchClock

HIGH_WATER = 64 * 1024  # buffered body bytes at which the socket stops being read
LOW_WATER = 16 * 1024   # ... and resumes


class HTTPError(Exception):
    """An HTTP exchange with the upstream failed."""


class ConnectFailed(HTTPError):
    """The TCP connection could not be made (refused, unreachable, name not resolved)."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class ConnectTimeout(TimeoutError):
    """The TCP connection was not made within the connect timeout."""


class ReadTimeout(TimeoutError):
    """The upstream sent nothing for longer than the read timeout."""


class ConnectionLost(HTTPError):
    """The upstream closed the connection before its response ended."""


class ProtocolError(HTTPError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one request at a time. Loop-only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float,
                 clock: WatchClock) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._clock = clock
        self.due = float("inf")  # loop time the current wait times out (see `wait`)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.done = False  # the response's body ended cleanly
        self.keep_alive = False
        self.received = False  # any byte of this response arrived
        self.error: BaseException | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transport is not an asyncio.Transport
        # subclass, though it has the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = ProtocolError(f"unparseable response: {exc}")
            self.close()
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost decides whether the body ended

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done and self.error is None:
            if self.headers_done and "content-length" not in self.headers \
                    and "chunked" not in self.headers.get("transfer-encoding", "").lower():
                self.done = True  # a body delimited by the connection's close (HTTP/1.0 style)
            else:
                reason = f": {exc}" if exc else ""
                where = "the response body ended" if self.headers_done else "the response headers"
                self.error = ConnectionLost(f"connection closed before {where}{reason}")
        self._wake()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self._parser.should_keep_alive()

    # -- used by Pool and Response -----------------------------------------------------------

    def start(self, request: bytes) -> None:
        """Send one request on an idle connection."""
        if self.received:  # a fresh parser for each response after the first
            self._parser = httptools.HttpResponseParser(self)
        self._reset()
        assert self.transport is not None
        self.transport.write(request)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        """Wait for the next event (bytes, end, error); ReadTimeout after `timeout` (default:
        the read timeout), told by the pool's clock rather than a timer of its own."""
        waiter = self._waiter = self._loop.create_future()
        self.due = self._loop.time() + (timeout or self._read_timeout)
        self._clock.add(self)
        try:
            await waiter
        finally:
            self._clock.discard(self)
            self._waiter = None

    def fire(self, now: float) -> None:
        """The clock's call once the wait's time has passed."""
        self.due = float("inf")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ReadTimeout("no data from the upstream within the read timeout"))

    def take(self) -> bytes:
        """Every buffered body byte (b"" if none), resuming the socket once drained."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data


class Response:
    """A response whose status and headers are in. Read the body once; always `release()`."""

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = conn.status
        self.headers = conn.headers  # names lower-cased

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call, waiting for some; b"" at the end."""
        conn = self._conn
        if conn is None:
            return b""
        while True:
            data = conn.take()
            if data:
                return data
            if conn.error is not None:
                raise conn.error
            if conn.done:
                return b""
            try:
                await conn.wait()
            except BaseException:
                self.release()  # a timed-out or cancelled read leaves the body unfinished
                raise

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Pool the connection if the body ended cleanly and keep-alive applies, else close it.
        Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.done and conn.keep_alive and conn.error is None and not conn.closed \
                and not conn._chunks:
            self._pool._put(conn)
        else:
            conn.close()


class Pool:
    """Keep-alive connections to one `host:port`, as many as are in use at once. Loop-only."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float,
                 keepalive_timeout: float = 30.0) -> None:
        self.host, self.port = host, port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive_timeout
        host_header = f"[{host}]" if ":" in host else host
        if port != 80:
            host_header += f":{port}"
        self._host_line = f"Host: {host_header}\r\n".encode("latin-1")
        self._idle: list[_Connection] = []
        self._closed = False
        self._clock: WatchClock | None = None  # the read timeouts' (made on the pool's loop)

    async def request(self, method: str, target: str, headers: dict[str, str],
                      body: bytes, header_timeout: float | None = None) -> Response:
        """Send a request and wait for its status and headers (see the module docstring), at
        most `header_timeout` seconds of silence (default: the read timeout)."""
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_line]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"header {name!r} contains a line break")  # as aiohttp does
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1"))
        lines.append(body)
        request = b"".join(lines)
        while True:
            conn = self._take()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            conn.start(request)
            try:
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(header_timeout)
            except ConnectionLost:
                conn.close()
                if reused and not conn.received:
                    continue  # the server closed it while idle and never saw this request
                raise
            except BaseException:
                conn.close()
                raise
            return Response(self, conn)

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    def _put(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._clock is None or self._clock.loop is not loop:
            self._clock = WatchClock(loop)
        clock = self._clock
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self._read_timeout, clock), self.host, self.port)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host}:{self.port} within "
                                 f"{self._connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectFailed(exc) from None
        return conn

    def close(self) -> None:
        """Close the idle connections; those in use close when released."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
