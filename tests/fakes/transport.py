"""A scripted `Transport` for unit tests of the OpenAI backend (router/backends/transport.py).

`FakeTransport(status=..., chunks=[...], headers=...)` answers every `handle()` with that
exchange; `fail_on_send` raises before a status (a refused or timed-out connection) and
`fail_after` raises after that many chunks (a dropped connection mid-body). Every request is
kept in `requests` as (path, headers, body).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class FakeExchange:
    status: int
    headers: Mapping[str, str]
    chunks: list[bytes]
    fail_after: BaseException | None = None
    released: bool = False

    async def next_chunk(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail_after is not None:
            raise self.fail_after
        return b""

    def release(self) -> None:
        self.released = True


@dataclass
class FakeTransport:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    fail_on_send: BaseException | None = None
    fail_after: BaseException | None = None
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    exchanges: list[FakeExchange] = field(default_factory=list)
    closed: bool = False

    async def handle(self, path: str, headers: dict[str, str], body: bytes,
                     header_timeout: float | None = None) -> FakeExchange:
        self.requests.append((path, headers, body))
        if self.fail_on_send is not None:
            raise self.fail_on_send
        exchange = FakeExchange(self.status, self.headers, list(self.chunks), self.fail_after)
        self.exchanges.append(exchange)
        return exchange

    async def close(self) -> None:
        self.closed = True
