"""Validation of an Anthropic Messages body (and a count_tokens body). Pure.

Checks exactly the fields the translation to Chat Completions reads, and raises `BadRequest`
with a sentence naming the first bad field (`messages[2].content[0].source`, say); the HTTP
layer turns it into Anthropic's error shape. Unknown fields are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from router.errors import BadRequest
from router.wire.chat import MAX_INTEGER, decode_object

# "system" inside messages: Claude Code (2.1.3xx) sends mid-conversation system messages.
ROLES = frozenset({"user", "assistant", "system"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
# Blocks that only mean something to Anthropic itself: accepted, not forwarded.
DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking", "server_tool_use",
                            "web_search_tool_result", "search_result", "container_upload"})


def parse(raw: bytes, *, count_only: bool = False) -> dict[str, Any]:
    """Decode and validate a Messages body (or a count_tokens body). Raises BadRequest."""
    body = decode_object(raw)
    validate(body, count_only=count_only)
    return body


def _one_of(value: Any, options: frozenset[str]) -> bool:
    """`value in options` for any JSON value (a list or an object is never a member)."""
    return isinstance(value, str) and value in options


def _bad(message: str, field: str) -> BadRequest:
    return BadRequest(message, param=field)


def _is_int(value: Any) -> bool:
    return (not isinstance(value, bool)) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer()))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(body: dict[str, Any], *, count_only: bool = False) -> None:
    """Check the fields this translation reads. Raises BadRequest naming the first bad field."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("'model' is required and must be a string.", "model")
    if not count_only:
        value = body.get("max_tokens")
        if value is None:
            raise _bad("'max_tokens' is required.", "max_tokens")
        if not (_is_int(value) and 0 <= value <= MAX_INTEGER):
            raise _bad("'max_tokens' must be a non-negative integer.", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' is required and must be a non-empty array.", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object.", where)
        if not _one_of(message.get("role"), ROLES):
            raise _bad(f"'{where}.role' must be 'user', 'assistant' or 'system'.",
                       f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            _check_blocks(content, f"{where}.content")
        elif not isinstance(content, str):
            raise _bad(f"'{where}.content' must be a string or an array of content blocks.",
                       f"{where}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise _bad("'system' must be a string or an array of text blocks.", "system")
        for j, block in enumerate(system):
            if not isinstance(block, dict) or not isinstance(block.get("text"), str):
                raise _bad(f"'system[{j}]' must be a text block with a string 'text'.",
                           f"system[{j}]")
    _check_tools(body)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list)
                                  and all(isinstance(s, str) for s in stops)):
        raise _bad("'stop_sequences' must be an array of strings.", "stop_sequences")
    for flag in ("stream",):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"'{flag}' must be a boolean.", flag)
    for number in ("temperature", "top_p", "top_k"):
        if body.get(number) is not None and not _is_number(body[number]):
            raise _bad(f"'{number}' must be a number.", number)
    for obj in ("metadata", "thinking"):
        if body.get(obj) is not None and not isinstance(body[obj], dict):
            raise _bad(f"'{obj}' must be an object.", obj)


def _check_blocks(blocks: list[Any], where: str) -> None:
    for j, block in enumerate(blocks):
        at = f"{where}[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"'{at}' must be a content block with a string 'type'.", f"{at}.type")
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _bad(f"'{at}.text' must be a string.", f"{at}.text")
        elif kind == "image":
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
                raise _bad(f"'{at}.source' must be an object with type 'base64' or 'url'.",
                           f"{at}.source")
            key = "data" if source["type"] == "base64" else "url"
            if not isinstance(source.get(key), str):
                raise _bad(f"'{at}.source.{key}' must be a string.", f"{at}.source.{key}")
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"'{at}' (tool_use) needs a string 'id' and 'name'.", f"{at}.id")
            if not isinstance(block.get("input", {}), dict):
                raise _bad(f"'{at}.input' must be an object.", f"{at}.input")
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"'{at}.tool_use_id' must be a string.", f"{at}.tool_use_id")
            content = block.get("content")
            if isinstance(content, list):
                _check_blocks(content, f"{at}.content")
            elif content is not None and not isinstance(content, str):
                raise _bad(f"'{at}.content' must be a string or an array of blocks.",
                           f"{at}.content")
        elif kind == "document":
            # Any source: Claude (native) reads PDFs; a Chat backend gets the text or a note.
            if not isinstance(block.get("source"), dict):
                raise _bad(f"'{at}.source' must be an object.", f"{at}.source")
        elif kind not in DROPPED_BLOCKS:
            raise _bad(f"'{at}.type' {kind!r} is not a supported content block type.",
                       f"{at}.type")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array.", "tools")
        for j, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _bad(f"'tools[{j}].name' must be a string.", f"tools[{j}].name")
            schema = tool.get("input_schema")
            if schema is not None and not isinstance(schema, dict):
                raise _bad(f"'tools[{j}].input_schema' must be an object.",
                           f"tools[{j}].input_schema")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or not _one_of(choice.get("type"), TOOL_CHOICES):
            raise _bad("'tool_choice.type' must be one of auto, any, tool, none.",
                       "tool_choice.type")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _bad("'tool_choice.name' is required when tool_choice.type is 'tool'.",
                       "tool_choice.name")

