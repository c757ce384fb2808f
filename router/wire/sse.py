"""Server-sent events from backends: relaying only whole, well-formed lines, and reading deltas.

`SSEText` reads the content deltas out of a chat stream (for the bot). `checked()` guards the
relay: a `data:` line that is not JSON (nor `[DONE]`) breaks every OpenAI client reading the
stream, so `checked()` catches it: before the first byte it becomes an
`UpstreamError` (the router falls back to the next candidate); after it, a `StreamBroken` (the
proxy ends the stream with an OpenAI error event and logs the row as 502).

Cost: one `rfind` per chunk and one `orjson.loads` per event (about a microsecond each). A
partial line is held back until its end arrives; a client cannot use half a line anyway, and it
means the proxy's error event always starts on a fresh line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from router.errors import StreamBroken

_SNIPPET = 60


def first_bad_line(block: bytes) -> tuple[int, str] | None:
    """Offset and description of the first malformed `data:` line in `block`, or None."""
    pos = 0
    while (start := block.find(b"data:", pos)) >= 0:
        end = block.find(b"\n", start)
        if end < 0:
            end = len(block)
        if start == 0 or block[start - 1] == 0x0A:  # only a field at the start of a line
            payload = block[start + 5:end].strip()
            if payload and payload != b"[DONE]":
                try:
                    orjson.loads(payload)
                except orjson.JSONDecodeError:
                    text = payload[:_SNIPPET].decode("utf-8", "replace")
                    return start, f"a data line that is not JSON ({text!r})"
        pos = end + 1
    return None


async def checked(name: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Re-yield `chunks` cut at line ends; raise StreamBroken at the first malformed line.

    Lines before the malformed one are yielded first. Errors of `chunks` pass through.
    """
    tail = b""
    async for chunk in chunks:
        data = tail + chunk if tail else chunk
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if not cut:
            continue
        whole = data[:cut]
        bad = first_bad_line(whole)
        if bad is not None:
            if bad[0]:
                yield whole[:bad[0]]
            raise StreamBroken(f"backend {name} sent {bad[1]}")
        yield whole
    if tail:
        bad = first_bad_line(tail)
        if bad is not None:
            raise StreamBroken(f"backend {name} sent {bad[1]}")
        yield tail


class SSEText:
    """Incremental parser of an OpenAI chat SSE stream into content deltas."""

    def __init__(self) -> None:
        self._buffer = b""
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[str] = []
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("error"):
                error = event["error"]
                self.error = error.get("message") if isinstance(error, dict) else str(error)
                continue
            for choice in event.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    out.append(delta)
        return out
