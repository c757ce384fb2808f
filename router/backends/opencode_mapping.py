"""Pure translation between OpenAI chat requests/answers and OpenCode's session API (no I/O).

- `build_prompt(body)` turns an OpenAI chat body into what one OpenCode message carries: the
  client's system/developer messages joined into the message's `system` field, the earlier turns
  as a transcript text part, and the last user message (text and images) as the final parts.
  OpenCode keeps history per session; the router uses a fresh session per request, so the
  history has to travel inside the one message.
- `SessionEvents` follows one session on OpenCode's `/event` stream and yields `Delta`, `Done`
  and `Failure` values.
- `ChunkEncoder` writes OpenAI `chat.completion.chunk` SSE bytes; `completion_body` writes a
  complete `chat.completion`.
- `map_error` turns an OpenCode error object (APIError, ProviderAuthError, ...) into a `Failure`
  with the HTTP status and an OpenAI-shaped body a person can act on.
- `relay_agent_config()` is the OpenCode agent the router installs for itself, and
  `agent_missing` the refusal when it cannot (see `OpenCodeBackend`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.errors import error_body, error_type

LOGIN_HINT = ("log in again inside the OpenCode container: "
              "`docker compose exec -it opencode-service opencode auth login`")

RELAY_AGENT = "router-relay"
RELAY_PROMPT = "You are a helpful assistant."


def relay_agent_config() -> dict[str, Any]:
    """The `router-relay` agent: a one-line prompt that replaces OpenCode's coding-agent prompt
    ("You are opencode, an interactive CLI tool...", ~9,600 characters), no tools, no permissions.
    The client's own system prompt travels in each message's `system` field, after this one."""
    return {"mode": "primary", "description": "Plain chat relay for local-ai-router",
            "prompt": RELAY_PROMPT, "tools": {"*": False}, "permission": {"*": "deny"}}


def agent_missing(agent: str, url: str, why: str) -> Failure:
    """The 503 the router answers instead of relaying with OpenCode's coding-agent prompt."""
    return Failure(503, f"The OpenCode server at {url} has no {agent!r} agent and the router could "
                        f"not install it ({why}), so it will not relay: the model would get "
                        "OpenCode's coding-agent system prompt instead of yours. Fix: let the "
                        "router write OpenCode's global config (PATCH /global/config, OpenCode "
                        f"1.18 or newer), or add the agent {agent!r} from "
                        "deploy/opencode/opencode.json to the OpenCode server's opencode.json "
                        "and restart it.", False, "relay_agent_missing")


HISTORY_HEADER = ("Earlier turns of this conversation, oldest first (for context; "
                  "answer only the final user message that follows):")


class PromptError(ValueError):
    """The request cannot be expressed as an OpenCode message (the message says why)."""


@dataclass(frozen=True)
class Prompt:
    system: str | None
    parts: list[dict[str, Any]]


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                texts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "image_url":
                texts.append("[image]")
        return "\n".join(texts)
    raise PromptError("message content must be a string or a list of content parts")


def _file_parts(content: Any) -> list[dict[str, Any]]:
    """Images of the last user message as OpenCode file parts (data: or http(s) URLs)."""
    parts: list[dict[str, Any]] = []
    if not isinstance(content, list):
        return parts
    for index, part in enumerate(content):
        if not (isinstance(part, dict) and part.get("type") == "image_url"):
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise PromptError("image_url parts need a url")
        mime = "image/png"
        if url.startswith("data:"):
            mime = url[5:].split(";", 1)[0].split(",", 1)[0] or mime
        parts.append({"type": "file", "mime": mime, "url": url, "filename": f"image-{index}"})
    return parts


def _turn(message: dict[str, Any]) -> str:
    role = str(message.get("role"))
    text = _content_text(message.get("content"))
    if role == "assistant" and message.get("tool_calls"):
        calls = [f"{c.get('function', {}).get('name')}({c.get('function', {}).get('arguments', '')})"
                 for c in message["tool_calls"] if isinstance(c, dict)]
        text = (text + "\n" if text else "") + "[called tools: " + ", ".join(calls) + "]"
    if role == "tool":
        role = f"tool result ({message.get('tool_call_id', '')})"
    name = f" name=\"{message['name']}\"" if message.get("name") else ""
    return f"<turn role=\"{role}\"{name}>\n{text}\n</turn>"


def build_prompt(body: dict[str, Any]) -> Prompt:
    """The OpenCode message for an OpenAI chat body. Raises PromptError for unusable input."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PromptError("messages must be a non-empty list")
    if body.get("tools") and body.get("tool_choice") != "none":
        raise PromptError("the OpenCode backend relays plain chat and cannot return tool calls")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise PromptError("every message must be an object")
        if message.get("role") in ("system", "developer"):
            system.append(_content_text(message.get("content")))
        else:
            turns.append(message)
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise PromptError("messages must contain at least one user message")
    parts: list[dict[str, Any]] = []
    if last_user:
        transcript = "\n".join(_turn(m) for m in turns[:last_user])
        parts.append({"type": "text", "text": f"{HISTORY_HEADER}\n\n{transcript}"})
    final = turns[last_user]
    text = _content_text(final.get("content"))
    tail = turns[last_user + 1:]
    if tail:  # e.g. an assistant prefill after the last user turn
        text += "\n\n" + "\n".join(_turn(m) for m in tail)
    parts.append({"type": "text", "text": text or " "})
    parts.extend(_file_parts(final.get("content")))
    return Prompt("\n\n".join(s for s in system if s) or None, parts)


# -- errors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """OpenCode could not answer. `body` is the OpenAI error envelope for the client."""

    status: int
    message: str
    retriable: bool
    code: str | None = None

    @property
    def body(self) -> bytes:
        return orjson.dumps(error_body(self.message, error_type(self.status), self.code))


def _provider_message(data: dict[str, Any]) -> str:
    message = str(data.get("message") or "").strip()
    raw = data.get("responseBody")
    if isinstance(raw, str) and raw:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            message = str(parsed["error"].get("message") or message)
    return message or "no message"


def map_error(error: Any, model: str) -> Failure:
    """An OpenCode error object (`{"name", "data"}`) as a Failure for the client."""
    if not isinstance(error, dict):
        return Failure(502, f"OpenCode failed for {model}: {error}", True, "upstream_error")
    name = str(error.get("name") or "UnknownError")
    raw_data = error.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    provider = str(data.get("providerID") or model.partition("/")[0])
    if name == "ProviderAuthError":
        return Failure(401, f"OpenCode's login for provider {provider} was refused "
                            f"({data.get('message') or 'no credentials'}); {LOGIN_HINT}.",
                       False, "provider_auth_error")
    if name == "APIError":
        status = data.get("statusCode") if isinstance(data.get("statusCode"), int) else None
        text = _provider_message(data)
        if status in (401, 403):
            return Failure(401, f"The provider behind {model} refused OpenCode's credentials "
                                f"(HTTP {status}: {text}); the subscription login has probably "
                                f"expired: {LOGIN_HINT}.", False, "provider_auth_error")
        if status == 404:
            return Failure(404, f"The provider does not know the model {model} (HTTP 404: {text}); "
                                "check OPENCODE_GLM_MODEL / OPENCODE_CLAUDE_MODEL.",
                           False, "model_not_found")
        if status == 429:
            return Failure(429, f"The provider behind {model} is rate limiting OpenCode: {text}",
                           True, "rate_limit_exceeded")
        if status is not None and 400 <= status < 500:
            return Failure(status, f"The provider rejected the request for {model} "
                                   f"(HTTP {status}): {text}", False, "invalid_request")
        retriable = bool(data.get("isRetryable", True))
        where = f"HTTP {status}" if status else "no status"
        return Failure(502, f"The provider behind {model} failed ({where}): {text}",
                       retriable, "upstream_error")
    if name == "ContextOverflowError":
        return Failure(400, f"The conversation is too long for {model}: "
                            f"{data.get('message') or 'context overflow'}", False,
                       "context_length_exceeded")
    if name == "MessageAbortedError":
        return Failure(502, f"OpenCode aborted the answer from {model}", True, "upstream_error")
    message = str(data.get("message") or name)
    return Failure(502, f"OpenCode failed for {model} ({name}): {message}", True, "upstream_error")


def retry_failure(status: dict[str, Any], model: str) -> Failure:
    """OpenCode is retrying a provider error itself; the router gives up and falls back instead."""
    message = str(status.get("message") or "provider error")
    limited = "rate" in message.lower() and "limit" in message.lower()
    return Failure(429 if limited else 503,
                   f"The provider behind {model} failed and OpenCode started retrying "
                   f"(attempt {status.get('attempt', '?')}): {message}", True,
                   "rate_limit_exceeded" if limited else "upstream_error")


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    text: str
    kind: str = "text"  # text | reasoning


@dataclass(frozen=True)
class Done:
    finish_reason: str
    usage: dict[str, Any] | None


Out = Delta | Done | Failure

FINISH = {"stop": "stop", "end_turn": "stop", "length": "length", "max_tokens": "length",
          "content-filter": "content_filter", "content_filter": "content_filter",
          "tool-calls": "tool_calls", "tool_calls": "tool_calls"}


def usage_of(info: dict[str, Any]) -> dict[str, Any] | None:
    tokens = info.get("tokens")
    if not isinstance(tokens, dict):
        return None
    raw_cache = tokens.get("cache")
    cache: dict[str, Any] = raw_cache if isinstance(raw_cache, dict) else {}
    cached = int(cache.get("read") or 0)
    prompt = int(tokens.get("input") or 0) + cached + int(cache.get("write") or 0)
    reasoning = int(tokens.get("reasoning") or 0)
    completion = int(tokens.get("output") or 0) + reasoning
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


@dataclass
class SessionEvents:
    """Follows one OpenCode session on the `/event` stream. Feed every event; read the outputs.

    `retry_limit` is how many OpenCode retry announcements to tolerate before giving up (0: give
    up on the first, so the router can fall back instead of waiting through a retry storm).
    """

    session_id: str
    model: str
    retry_limit: int = 0
    parts: dict[str, str] = field(default_factory=dict)  # part id -> type
    emitted: dict[str, str] = field(default_factory=dict)  # part id -> text sent so far
    user_messages: set[str] = field(default_factory=set)
    info: dict[str, Any] | None = None
    finished: bool = False

    def feed(self, event: dict[str, Any]) -> list[Out]:
        kind = event.get("type")
        props = event.get("properties")
        if self.finished or not isinstance(props, dict):
            return []
        session = props.get("sessionID") or (props.get("info") or {}).get("sessionID") \
            or (props.get("part") or {}).get("sessionID")
        if session != self.session_id:
            return []
        if kind == "message.updated":
            return self._message(props.get("info") or {})
        if kind == "message.part.updated":
            return self._part(props.get("part") or {})
        if kind == "message.part.delta":
            if props.get("field") != "text" or props.get("messageID") in self.user_messages:
                return []
            part_id = str(props.get("partID"))
            part_kind = self.parts.get(part_id, "text")
            if part_kind not in ("text", "reasoning"):
                return []
            text = str(props.get("delta") or "")
            self.emitted[part_id] = self.emitted.get(part_id, "") + text
            return [Delta(text, part_kind)] if text else []
        if kind == "session.status":
            status: dict[str, Any] = props.get("status") or {}
            if status.get("type") == "retry" and int(status.get("attempt") or 1) > self.retry_limit:
                return self._finish(retry_failure(status, self.model))
            return []
        if kind == "session.error":
            return self._finish(map_error(props.get("error"), self.model))
        if kind == "session.idle":
            return self._done()
        return []

    def _message(self, info: dict[str, Any]) -> list[Out]:
        if info.get("role") == "user":
            self.user_messages.add(str(info.get("id")))
            return []
        if info.get("role") != "assistant":
            return []
        self.info = info
        error = info.get("error")
        if error:
            if error.get("name") == "MessageOutputLengthError":
                return []
            return self._finish(map_error(error, self.model))
        return []

    def _part(self, part: dict[str, Any]) -> list[Out]:
        part_id = str(part.get("id"))
        kind = str(part.get("type"))
        if part.get("messageID") in self.user_messages:
            return []
        self.parts[part_id] = kind
        if kind not in ("text", "reasoning") or part.get("synthetic"):
            return []
        full = str(part.get("text") or "")
        sent = self.emitted.get(part_id, "")
        if full.startswith(sent) and len(full) > len(sent):
            self.emitted[part_id] = full
            return [Delta(full[len(sent):], kind)]
        return []

    def _done(self) -> list[Out]:
        info = self.info or {}
        error = info.get("error")
        finish = FINISH.get(str(info.get("finish") or "stop"), "stop")
        if isinstance(error, dict) and error.get("name") == "MessageOutputLengthError":
            finish = "length"
        return self._finish(Done(finish, usage_of(info)))

    def _finish(self, out: Out) -> list[Out]:
        self.finished = True
        return [out]


# -- OpenAI output -------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion_body(model: str, text: str, reasoning: str, done: Done,
                    cid: str | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    body: dict[str, Any] = {
        "id": cid or completion_id(), "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": done.finish_reason,
                     "logprobs": None}],
    }
    if done.usage is not None:
        body["usage"] = done.usage
    return orjson.dumps(body)


class ChunkEncoder:
    """OpenAI `chat.completion.chunk` SSE lines for one answer."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = completion_id()
        self.created = int(time.time())
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               usage: dict[str, Any] | None = None, no_choices: bool = False) -> bytes:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk",
                                 "created": self.created, "model": self.model,
                                 "choices": [] if no_choices else [
                                     {"index": 0, "delta": delta, "finish_reason": finish,
                                      "logprobs": None}]}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def start(self) -> bytes:
        self._started = True
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def delta(self, delta: Delta) -> bytes:
        key = "content" if delta.kind == "text" else "reasoning_content"
        return self._chunk({key: delta.text})

    def done(self, done: Done) -> bytes:
        out = self._chunk({}, done.finish_reason)
        if self.include_usage:
            out += self._chunk({}, usage=done.usage or {"prompt_tokens": 0, "completion_tokens": 0,
                                                        "total_tokens": 0}, no_choices=True)
        return out + b"data: [DONE]\n\n"
