"""Token usage read off a response as it passes through, at almost no cost per chunk.

Non-streaming bodies carry `usage`; streams carry it in their last event when the client asked
for `stream_options.include_usage` (Anthropic and Responses answers passed through natively carry
it in `message_start` / `message_delta` and `response.completed`). Otherwise completion tokens
are counted as content events (vLLM sends one token per event), so the decision log always has
a figure.
"""

from __future__ import annotations

import orjson


class UsageMeter:
    """Feed every body chunk in order; read `prompt_tokens` / `completion_tokens` at the end."""

    __slots__ = ("_events", "_reported", "completion_tokens", "prompt_tokens")

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self._events = 0
        self._reported = False

    def feed(self, chunk: bytes) -> None:
        if chunk.startswith(b"{"):  # a whole JSON body
            self._from_body(chunk)
            return
        self._events += chunk.count(b"data: {")
        if b'"usage":{' in chunk or b'"usage": {' in chunk:
            for line in chunk.split(b"\n"):
                if line.startswith(b"data:") and (b'"usage":{' in line or b'"usage": {' in line):
                    self._from_json(line[5:].strip())
        if not self._reported:
            self.completion_tokens = self._events or None

    def _from_body(self, body: bytes) -> None:
        """Usage of a whole JSON body. A top-level `usage` comes last in OpenAI's and vLLM's
        answers, so "{" + the body from its key on is a small JSON object of its own: parse
        that, not a long answer. Anything else (no such key, a nested one) parses it all."""
        at = body.rfind(b'"usage"')
        if at > 0:
            try:
                tail = orjson.loads(b"{" + body[at:])
            except orjson.JSONDecodeError:
                tail = None
            if isinstance(tail, dict) and isinstance(tail.get("usage"), dict):
                self._take(tail["usage"])
                return
        self._from_json(body)

    def _from_json(self, data: bytes) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        usage = payload.get("usage")
        if usage is None:  # Anthropic's message_start, Responses' response.completed
            inner = payload.get("message") or payload.get("response")
            usage = inner.get("usage") if isinstance(inner, dict) else None
        if isinstance(usage, dict):
            self._take(usage)

    def _take(self, usage: dict[str, object]) -> None:
        # Chat names, else Anthropic's and Responses' (a native backend's answer).
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        self.prompt_tokens = prompt if isinstance(prompt, int) else self.prompt_tokens
        if isinstance(completion, int):
            self.completion_tokens = completion
            self._reported = True
