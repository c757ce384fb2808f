"""Claude Code and Codex through the router to an `anthropic`-kind backend (Claude with a key).

The backend is tests/fakes/scripted_anthropic.py: the same scripted coding model, speaking only
Anthropic's Messages API and requiring the operator's key. The router's config file declares it
and makes Claude Code's model ids routable with glob aliases, as docs/clients.md tells people to:
Claude Code's Messages requests pass through natively (its own fields reach the backend
untouched); Codex's Responses requests are translated to Messages and back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients import agents
from tests.clients.clients_env import Clients
from tests.clients.stack import Stack
from tests.fakes.scripted_anthropic import API_KEY, ScriptedAnthropic
from tests.fakes.scripted_model import DONE_TEXT, ScriptedModel, task_prompt

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CLAUDE_MODEL = "claude-sonnet-5-5"
HAIKU_MODEL = "claude-haiku-5-5"

ROUTER_CONFIG = """
[backends.claude]
kind = "anthropic"
url = "{url}"
api_key = "${{CLAUDE_KEY}}"

[aliases]
"claude-opus-*" = "claude"
"claude-sonnet-*" = "claude"
"claude-haiku-*" = "claude"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("router")

    def env(model: ScriptedModel) -> dict[str, str]:
        config = root / "router.toml"
        config.write_text(ROUTER_CONFIG.format(url=model.url))
        return {"ROUTER_CONFIG": str(config), "CLAUDE_KEY": API_KEY}

    served = (CLAUDE_MODEL, HAIKU_MODEL)
    running = Stack.start(ScriptedAnthropic(served=served), env, root)
    yield running
    running.stop()


def raw_requests(stack: Stack, marker: str) -> list[dict[str, Any]]:
    model = stack.model
    assert isinstance(model, ScriptedAnthropic)
    return [body for body in model.raw_requests if marker in json.dumps(body["messages"])]


def test_claude_code_passes_through_to_claude(clients: Clients, stack: Stack,
                                              tmp_path: Path) -> None:
    target = tmp_path / "work" / "claude.txt"
    content = "written-by-claude-code-on-the-anthropic-backend"
    run = agents.claude_code(clients.claude, stack.router.url, tmp_path,
                             task_prompt(str(target), content), CLAUDE_MODEL, HAIKU_MODEL,
                             stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content
    assert run.json_result()["result"] == DONE_TEXT
    call, _tool_message = stack.tool_round_trip(content)
    assert call.tool_name == "Write"
    bodies = raw_requests(stack, content)
    # Passed through, not rebuilt from Chat: Claude Code's own Messages fields arrive as sent.
    assert all(body["model"] == CLAUDE_MODEL and "metadata" in body for body in bodies), \
        [(body["model"], sorted(body)) for body in bodies]
    assert any(block.get("type") == "tool_result" for body in bodies
               for message in body["messages"] if isinstance(message["content"], list)
               for block in message["content"])
    stack.assert_routed("/v1/messages", CLAUDE_MODEL, "claude")
    assert stack.sentinel.attempts == []


def test_codex_reaches_claude_through_translation(clients: Clients, stack: Stack,
                                                  tmp_path: Path) -> None:
    target = tmp_path / "work" / "codex.txt"
    content = "written-by-codex-on-the-anthropic-backend"
    run = agents.codex(clients.codex, stack.router.url, tmp_path,
                       task_prompt(str(target), content), CLAUDE_MODEL, stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content + "\n"
    assert DONE_TEXT in run.output, run.describe()
    call, _tool_message = stack.tool_round_trip(content)
    assert call.tool_name in ("exec_command", "shell")
    bodies = raw_requests(stack, content)
    assert bodies and all(isinstance(body["max_tokens"], int) for body in bodies)
    stack.assert_routed("/v1/responses", CLAUDE_MODEL, "claude")
    assert stack.sentinel.attempts == []
