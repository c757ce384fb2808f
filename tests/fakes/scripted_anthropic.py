"""The scripted coding model of tests/fakes/scripted_model.py, speaking Anthropic's Messages API only.

It stands in for Claude behind the router's `anthropic` backend kind: `POST /v1/messages` (whole
or streamed with Anthropic's events, a tool call as `tool_use` with its JSON input streamed in
`input_json_delta` pieces) and `GET /v1/models` in Anthropic's shape; it requires `x-api-key`
(== `api_key`) and `anthropic-version`, as Anthropic does. There is no `/v1/chat/completions`: a
Chat or Responses client reaches it only through the router's translation to Messages.

The script is the same as the Chat model's (`plan_reply`): the Messages body is read into the
Chat shape first, by this module's own small reader (not the router's translation, which is what
is under test). `requests` keeps that Chat-shaped view (tool results as `role: "tool"` messages
with `tool_call_id`), `raw_requests` the bodies as received, `headers` their headers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.scripted_model import Reply, ScriptedModel, plan_reply

API_KEY = "sk-ant-scripted"
PIECES = 4


@dataclass
class ScriptedAnthropic(ScriptedModel):
    model: str = "claude-scripted"
    served: tuple[str, ...] = ()  # more ids GET /v1/models lists, as Anthropic lists every model
    api_key: str = API_KEY
    raw_requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._anthropic_models)
        app.router.add_post("/v1/messages", self._messages)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    async def _anthropic_models(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        ids = [self.model, *self.served]
        return web.json_response({"data": [{"type": "model", "id": m, "display_name": m,
                                            "created_at": "2026-01-01T00:00:00Z"} for m in ids],
                                  "has_more": False, "first_id": ids[0], "last_id": ids[-1]})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "messages and max_tokens are required")
        self.raw_requests.append(body)
        self.headers.append(dict(request.headers))
        chat = chat_view(body)
        self.requests.append(chat)
        reply = plan_reply(chat, self._next_call_id("toolu_scripted_"))
        self.replies.append(reply)
        content, stop = _content(reply)
        usage = {"input_tokens": max(1, len(json.dumps(body["messages"])) // 4),
                 "output_tokens": max(1, len(json.dumps(content)) // 4)}
        message = {"id": f"msg_{reply.call_id or 'scripted'}", "type": "message",
                   "role": "assistant", "model": body.get("model") or self.model,
                   "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in _events(message):
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            await asyncio.sleep(0)  # each event its own write, like the real API
        await response.write_eof()
        return response


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status)


def chat_view(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body read into the Chat shape the script understands (text, tool calls,
    tool results, tool names and parameters)."""
    messages: list[dict[str, Any]] = []
    for message in body["messages"]:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts = [b["text"] for b in blocks if b.get("type") == "text"]
        if message.get("role") == "assistant":
            calls = [{"id": b["id"], "type": "function", "function": {
                "name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
                for b in blocks if b.get("type") == "tool_use"]
            entry: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
            continue
        for block in blocks:
            if block.get("type") == "tool_result":
                messages.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                                 "content": block.get("content")})
        if texts:
            messages.append({"role": str(message.get("role")), "content": "\n".join(texts)})
    tools = [{"type": "function", "function": {"name": t["name"],
                                               "parameters": t.get("input_schema") or {}}}
             for t in body.get("tools") or () if isinstance(t, dict) and "name" in t]
    return {"model": body.get("model"), "messages": messages, "tools": tools,
            "stream": bool(body.get("stream"))}


def _content(reply: Reply) -> tuple[list[dict[str, Any]], str]:
    if reply.kind == "tool_call":
        return ([{"type": "tool_use", "id": reply.call_id, "name": reply.tool_name,
                  "input": json.loads(reply.arguments)}], "tool_use")
    return [{"type": "text", "text": reply.text}], "end_turn"


def _events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    start = dict(message, content=[], stop_reason=None,
                 usage={"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1})
    out: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start",
                                                                "message": start}),
                                             ("ping", {"type": "ping"})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opened, text = dict(block, text=""), block["text"]
            deltas = [{"type": "text_delta", "text": text[i:i + 8]} for i in range(0, len(text), 8)]
        else:
            opened, raw = dict(block, input={}), json.dumps(block["input"])
            step = max(1, -(-len(raw) // PIECES))
            deltas = [{"type": "input_json_delta", "partial_json": raw[i:i + step]}
                      for i in range(0, len(raw), step)]
        out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": opened}))
        out.extend(("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": delta}) for delta in deltas)
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": message["stop_reason"],
                                            "stop_sequence": None},
                                  "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out
