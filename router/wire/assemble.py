"""One JSON answer assembled from an OpenAI event stream.

The router sends a client's non-streaming chat or completions request upstream as a stream, so
that a backend loading a model (comments) or generating a long answer (events) is told apart
from a hung one, and builds the JSON the client asked for from the events: content, reasoning,
tool calls (arguments joined per index), refusal, finish reasons, logprobs and usage. Pure and
incremental: `feed()` each chunk, then `result()`.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import StreamBroken


class StreamAssembler:
    """Feed SSE chunks of a chat (`chat=True`) or text completion stream; read `result()`."""

    def __init__(self, chat: bool) -> None:
        self._chat = chat
        self._buffer = b""
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self.error: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream. Raises StreamBroken on an error event."""
        data = self._buffer + chunk if self._buffer else chunk
        cut = data.rfind(b"\n") + 1
        self._buffer = data[cut:]
        for line in data[:cut].split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == b"[DONE]":
                continue
            self._event(orjson.loads(payload))

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        if isinstance(event.get("error"), dict):
            self.error = event["error"]
            raise StreamBroken(str(self.error.get("message") or "the backend sent an error event"))
        if not self._head:
            self._head = {key: event[key] for key in ("id", "created", "model",
                                                      "system_fingerprint") if key in event}
        if event.get("usage"):
            self._usage = event["usage"]
        for choice in event.get("choices") or ():
            index = choice.get("index", 0)
            into = self._choices.setdefault(index, {"finish_reason": None, "text": [],
                                                    "reasoning": [], "refusal": None,
                                                    "calls": {}, "logprobs": None})
            if choice.get("finish_reason"):
                into["finish_reason"] = choice["finish_reason"]
            if choice.get("logprobs"):
                _merge_logprobs(into, choice["logprobs"])
            if not self._chat:
                if choice.get("text"):
                    into["text"].append(choice["text"])
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                into["text"].append(delta["content"])
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                into["reasoning"].append(reasoning)
            if delta.get("refusal"):
                into["refusal"] = (into["refusal"] or "") + delta["refusal"]
            for call in delta.get("tool_calls") or ():
                _merge_call(into["calls"], call)

    def result(self) -> dict[str, Any]:
        """The answer as a `chat.completion` or `text_completion` object."""
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            out: dict[str, Any] = {"index": index, "finish_reason": c["finish_reason"],
                                   "logprobs": c["logprobs"]}
            if self._chat:
                message: dict[str, Any] = {"role": "assistant",
                                           "content": "".join(c["text"]) or None,
                                           "refusal": c["refusal"]}
                if c["reasoning"]:
                    message["reasoning_content"] = "".join(c["reasoning"])
                if c["calls"]:
                    message["tool_calls"] = [c["calls"][i] for i in sorted(c["calls"])]
                out["message"] = message
            else:
                out["text"] = "".join(c["text"])
            choices.append(out)
        answer = {"id": self._head.get("id", ""),
                  "object": "chat.completion" if self._chat else "text_completion",
                  "created": self._head.get("created", 0), "model": self._head.get("model", ""),
                  "choices": choices}
        if "system_fingerprint" in self._head:
            answer["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            answer["usage"] = self._usage
        return answer


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", len(calls))
    call = calls.get(index)
    function = delta.get("function") or {}
    if call is None:
        calls[index] = {"id": delta.get("id", ""), "type": delta.get("type", "function"),
                        "function": {"name": function.get("name", ""),
                                     "arguments": function.get("arguments", "")}}
        return
    if delta.get("id"):
        call["id"] = delta["id"]
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]


def _merge_logprobs(into: dict[str, Any], logprobs: dict[str, Any]) -> None:
    merged = into["logprobs"]
    if merged is None:
        into["logprobs"] = {key: list(value) if isinstance(value, list) else value
                            for key, value in logprobs.items()}
        return
    for key, value in logprobs.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key].extend(value)
