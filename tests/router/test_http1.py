"""The data-plane HTTP/1.1 client (`router.backends.http1`) against a scripted raw TCP server.

Each test scripts the bytes the upstream writes, so framing, keep-alive and failures are exact.
The last tests go through `OpenAIBackend.send` to check that the client's failures become the
same UpstreamError / StreamBroken as with aiohttp's client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from router.backends import http1
from router.backends.base import StreamBroken, UpstreamError
from router.backends.openai import OpenAIBackend
from tests.helpers import eventually, free_port

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 that reads each HTTP request and runs `script` to answer it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = free_port()
        self.connections = 0
        self.requests: list[bytes] = []
        self.client_closed = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.client_closed.set()
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.requests.append(head + await reader.readexactly(length))
                await self.script(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script) -> RawServer:
        server = await RawServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def pool_for(server: RawServer, read_timeout: float = 5.0) -> http1.Pool:
    return http1.Pool("127.0.0.1", server.port, connect_timeout=2.0, read_timeout=read_timeout)


def reply(body: bytes, *extra: str, status: str = "200 OK") -> Script:
    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n" \
               f"Content-Length: {len(body)}\r\n" + "".join(f"{h}\r\n" for h in extra) + "\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
    return script


async def test_content_length_body(serve):
    server = await serve(reply(b'{"ok": true}'))
    pool = pool_for(server)
    response = await pool.request("POST", "/v1/chat/completions", {"X-Request-ID": "r1"}, b"{}")
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    assert await response.read() == b'{"ok": true}'
    response.release()
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"X-Request-ID: r1\r\n" in request and request.endswith(b"\r\n\r\n{}")
    pool.close()


async def test_chunked_body_arrives_chunk_by_chunk(serve):
    go_on = asyncio.Event()

    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n")
        await writer.drain()
        await go_on.wait()
        writer.write(b"9\r\ndata: b\n\n\r\n0\r\n\r\n")
        await writer.drain()

    pool = pool_for(await serve(script))
    response = await pool.request("POST", "/v1/chat/completions", {}, b"{}")
    # The first chunk is delivered while the server still holds the rest back.
    assert await asyncio.wait_for(response.next_chunk(), 5) == b"data: a\n\n"
    go_on.set()
    assert await response.next_chunk() == b"data: b\n\n"
    assert await response.next_chunk() == b""
    response.release()
    pool.close()


async def test_connection_is_reused_after_a_clean_end(serve):
    server = await serve(reply(b"one"))
    pool = pool_for(server)
    for _ in range(3):
        response = await pool.request("POST", "/x", {}, b"")
        assert await response.read() == b"one"
        response.release()
    assert server.connections == 1 and len(server.requests) == 3
    pool.close()


async def test_connection_close_is_not_reused(serve):
    server = await serve(reply(b"one", "Connection: close"))
    pool = pool_for(server)
    for _ in range(2):
        response = await pool.request("POST", "/x", {}, b"")
        assert await response.read() == b"one"
        response.release()
    assert server.connections == 2
    pool.close()


async def test_idle_connection_closed_by_the_server_is_replaced(serve):
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(b"one")(reader, writer)
        writer.close()  # keep-alive was promised, but the server drops the idle connection

    server = await serve(script)
    pool = pool_for(server)
    first = await pool.request("POST", "/x", {}, b"")
    assert await first.read() == b"one"
    first.release()
    second = await pool.request("POST", "/x", {}, b"")
    assert await second.read() == b"one"
    second.release()
    assert server.connections == 2
    pool.close()


async def test_server_closing_mid_body_raises_connection_lost(serve):
    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    pool = pool_for(await serve(script))
    response = await pool.request("POST", "/x", {}, b"")
    assert await response.next_chunk() == b"partial"
    with pytest.raises(http1.ConnectionLost):
        await response.next_chunk()
    response.release()
    pool.close()


async def test_connect_refused():
    pool = http1.Pool("127.0.0.1", free_port(), connect_timeout=2.0, read_timeout=2.0)
    with pytest.raises(http1.ConnectFailed) as info:
        await pool.request("POST", "/x", {}, b"")
    assert isinstance(info.value.os_error, ConnectionRefusedError)


async def test_read_timeout_between_chunks(serve):
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        await reader.read()  # then silence, until the client closes

    server = await serve(script)
    pool = pool_for(server, read_timeout=0.2)
    response = await pool.request("POST", "/x", {}, b"")
    assert await response.next_chunk() == b"a"
    with pytest.raises(http1.ReadTimeout):
        await response.next_chunk()
    await asyncio.wait_for(server.client_closed.wait(), 5)  # the timed-out connection is closed
    pool.close()


async def test_release_before_the_end_closes_the_connection(serve):
    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()

    server = await serve(script)
    pool = pool_for(server)
    response = await pool.request("POST", "/x", {}, b"")
    assert await response.next_chunk() == b"a"
    response.release()  # the client went away: the upstream must see the connection close
    await asyncio.wait_for(server.client_closed.wait(), 5)
    response = await pool.request("POST", "/x", {}, b"")  # and it is not reused
    response.release()
    assert server.connections == 2
    pool.close()


async def test_reading_pauses_while_the_consumer_lags(serve):
    size = 8 * http1.HIGH_WATER
    sent = asyncio.Event()

    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        await writer.drain()
        sent.set()

    pool = pool_for(await serve(script))
    response = await pool.request("POST", "/x", {}, b"")
    transport = response._conn.transport if response._conn else None
    assert transport is not None
    await eventually(lambda: not transport.is_reading(), what="the full buffer pauses reading")
    assert len(await response.read()) == size
    await asyncio.wait_for(sent.wait(), 5)
    response.release()
    pool.close()


# -- through OpenAIBackend: the same errors as with aiohttp's client ---------------------------

async def test_backend_error_status_is_an_upstream_error(serve):
    server = await serve(reply(b'{"error": {"message": "busy"}}', "Retry-After: 7",
                               status="503 Service Unavailable"))
    backend = OpenAIBackend("3070", f"http://127.0.0.1:{server.port}/v1")
    with pytest.raises(UpstreamError) as info:
        await backend.send("/v1/chat/completions", {"model": "m"}, stream=False, headers={})
    exc = info.value
    assert (exc.status, exc.retriable, exc.retry_after) == (503, True, "7")
    assert exc.body == b'{"error": {"message": "busy"}}'
    assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1")
    await backend.close()


async def test_backend_refused_and_timeout_are_upstream_errors(serve):
    backend = OpenAIBackend("3070", f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamError, match="refused the connection") as info:
        await backend.send("/v1/chat/completions", {}, stream=False, headers={})
    assert info.value.retriable and info.value.status is None

    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # nothing, until the client closes

    server = await serve(silent)
    backend = OpenAIBackend("3070", f"http://127.0.0.1:{server.port}/v1", read_timeout=0.2)
    with pytest.raises(UpstreamError, match="timed out before answering"):
        await backend.send("/v1/chat/completions", {}, stream=False, headers={})
    await backend.close()


async def test_backend_stream_broken_mid_body(serve):
    async def script(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n")
        await writer.drain()
        writer.close()

    server = await serve(script)
    backend = OpenAIBackend("3070", f"http://127.0.0.1:{server.port}/v1")
    upstream = await backend.send("/v1/chat/completions", {}, stream=True, headers={})
    assert upstream.content_type == "text/event-stream"
    assert await anext(upstream.chunks) == b"data: a\n\n"
    with pytest.raises(StreamBroken, match="dropped the connection mid-response"):
        await anext(upstream.chunks)
    await upstream.release()
    await backend.close()
