"""A scripted coding model that speaks Chat Completions only (a real aiohttp server on loopback).

It plays one coding task the way a real model would, so real agents (Claude Code, Codex,
opencode, aider) can be driven end to end through the router without a GPU:

- The task is a user message written by `task_prompt(path, content)`: "Create the file PATH
  containing exactly: CONTENT".
- When the request offers tools and the task has not been acted on yet, the answer is ONE tool
  call, with the tool picked from what the client actually offered: a write-file tool
  (Claude Code's `Write` {file_path, content}, opencode's `write` {filePath, content}), else a
  shell tool (Codex's `exec_command` {cmd}, `shell` {command: [...]}, Claude Code's `Bash`
  {command}).
- When the conversation already holds a tool result (or an assistant tool call) after the last
  user message, the answer is the final text `DONE_TEXT`.
- Without tools, a task gets the file in aider's "whole" edit format (path line, fenced content);
  anything else gets a short text (titles, summaries and other background requests).

Both non-streaming and streaming answers are served; a streamed tool call sends its id and name
first and the JSON arguments in several pieces, as vLLM does. Only `/v1/chat/completions`,
`/v1/models` and `/health` exist: any other path is a 404, so a client that reaches this model
through the router proves the router translated its wire API.

`requests` keeps every chat body received; `replies` the kind of each answer ("tool_call",
"final", "whole_file", "text"), so tests can assert the tool round trip really happened.
Not thread-safe: use it from the loop that started it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL_ID = "scripted-coder"
CONTEXT_WINDOW = 200_000
DONE_TEXT = "The file is written."
TASK_RE = re.compile(r'Create the file (?P<path>[^\s"]+) containing exactly: (?P<content>[^\n<"]+)')
ARGUMENT_PIECES = 4


def task_prompt(path: str, content: str) -> str:
    """The user prompt the scripted model recognises as its task (content: one line)."""
    return f"Create the file {path} containing exactly: {content}"


@dataclass
class Reply:
    """What the model answers: a text, or one tool call (name + JSON arguments)."""

    kind: str  # tool_call | final | whole_file | text
    text: str = ""
    tool_name: str = ""
    arguments: str = ""
    call_id: str = ""


@dataclass
class ScriptedModel:
    model: str = MODEL_ID
    context_window: int = CONTEXT_WINDOW
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _calls: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()

    async def start(self, port: int = 0) -> ScriptedModel:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)

    def _next_call_id(self, prefix: str = "call_") -> str:
        self._calls += 1
        return f"{prefix}{self._calls}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{
            "id": self.model, "object": "model", "created": 0, "owned_by": "scripted",
            "max_model_len": self.context_window}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response({"error": {"message": "messages must be a list",
                                                 "type": "invalid_request_error",
                                                 "param": "messages", "code": None}}, status=400)
        self.requests.append(body)
        reply = plan_reply(body, self._next_call_id())
        self.replies.append(reply)
        if body.get("stream"):
            return await self._stream(request, body, reply)
        return web.json_response(_completion(body, reply))

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        for chunk in _chunks(body, reply):
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await asyncio.sleep(0)  # let each piece leave as its own write, like a real model
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def plan_reply(body: dict[str, Any], call_id: str) -> Reply:
    """The scripted answer to one Chat Completions body (pure; see the module docstring)."""
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    # The last user message that states the task: clients may add user messages after a tool
    # result (Claude Code's reminders), so "the last user message" is not enough.
    found = [(i, match) for i, m in enumerate(messages) if m.get("role") == "user"
             for match in [TASK_RE.search(_text(m))] if match is not None]
    if not found:
        return Reply("text", text="OK.")
    index, task = found[-1]
    if any(m.get("role") == "tool" or m.get("tool_calls") for m in messages[index + 1:]):
        return Reply("final", text=DONE_TEXT)
    path, content = task["path"], task["content"].rstrip()
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    if not tools:
        return Reply("whole_file", text=f"{path}\n```\n{content}\n```\n")
    call = _pick_tool(tools, path, content)
    if call is None:
        names = ", ".join(sorted(_tool_name(t) for t in tools))
        return Reply("text", text=f"No write or shell tool among: {names}.")
    name, arguments = call
    return Reply("tool_call", tool_name=name, arguments=json.dumps(arguments), call_id=call_id)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _tool_name(tool: dict[str, Any]) -> str:
    function = tool.get("function")
    return str((function if isinstance(function, dict) else tool).get("name", ""))


def _tool_params(tool: dict[str, Any]) -> set[str]:
    function = tool.get("function")
    schema = (function if isinstance(function, dict) else tool).get("parameters") or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    return set(props) if isinstance(props, dict) else set()


def _pick_tool(tools: list[dict[str, Any]], path: str,
               content: str) -> tuple[str, dict[str, Any]] | None:
    """A write-file tool if offered, else a shell tool; None when neither is there."""
    by_name = {_tool_name(t): _tool_params(t) for t in tools}
    for name, params in by_name.items():
        if name.lower() == "write" and "content" in params:
            key = next((k for k in ("file_path", "filePath", "path") if k in params), None)
            if key is not None:
                return name, {key: path, "content": content}
    command = f"printf '%s\\n' {shlex.quote(content)} > {shlex.quote(path)}"
    for name, params in by_name.items():
        if name == "exec_command" and "cmd" in params:
            return name, {"cmd": command}
        if name in ("shell", "local_shell") and "command" in params:
            return name, {"command": ["bash", "-lc", command]}
        if name.lower() == "bash" and "command" in params:
            return name, {"command": command, "description": "Write the file"}
    return None


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = max(1, len(json.dumps(body["messages"])) // 4)
    completion = max(1, len(reply.text or reply.arguments) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    finish = "stop"
    if reply.kind == "tool_call":
        message["tool_calls"] = [{"id": reply.call_id, "type": "function", "function": {
            "name": reply.tool_name, "arguments": reply.arguments}}]
        finish = "tool_calls"
    return {"id": f"chatcmpl-{reply.call_id or 'text'}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model") or MODEL_ID,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(body, reply)}


def _chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model") or MODEL_ID}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.kind == "tool_call":
        out.append(chunk({"tool_calls": [{"index": 0, "id": reply.call_id, "type": "function",
                                          "function": {"name": reply.tool_name,
                                                       "arguments": ""}}]}))
        step = max(1, -(-len(reply.arguments) // ARGUMENT_PIECES))
        for start in range(0, len(reply.arguments), step):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {
                "arguments": reply.arguments[start:start + step]}}]}))
        out.append(chunk({}, "tool_calls"))
    else:
        words = reply.text.split(" ")
        for i, word in enumerate(words):
            out.append(chunk({"content": word if i == len(words) - 1 else word + " "}))
        out.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append({**base, "choices": [], "usage": _usage(body, reply)})
    return out
