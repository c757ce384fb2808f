"""Real coding agents finish a one-tool-call task through the router, whose model speaks Chat only.

One router serves the module; its only backend (`3070`) is tests/fakes/scripted_model.py, which
serves `/v1/chat/completions` and nothing else, so Claude Code's Messages requests and Codex's
Responses requests reach it only through the router's translation layer (tool definitions, the
streamed tool call, the tool result and the final text, both ways). Each agent must write a file
with its OWN tool (the test reads the file), the scripted model must have seen the tool result,
the router must have logged the wire API that came in, and no client may try to reach the
internet (the egress sentinel is every client's proxy).

Installs (pinned, cached): tests/clients/clients_env.py. About 15 s when cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import agents
from tests.clients.clients_env import Clients
from tests.clients.stack import EgressSentinel, Stack
from tests.fakes.scripted_model import DONE_TEXT, ScriptedModel, task_prompt

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# The ids Claude Code sends for its main and its small background model, made routable with
# exact aliases here (a config file would use the globs "claude-sonnet-*" / "claude-haiku-*").
CLAUDE_MODEL = "claude-sonnet-5-5"
HAIKU_MODEL = "claude-haiku-5-5"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    def env(model: ScriptedModel) -> dict[str, str]:
        # With keys set, every client must authenticate: Claude Code with x-api-key, the
        # others with a Bearer token; rows name the key.
        return {"LOCAL_3070_URL": model.url, "ROUTER_API_KEYS": f"agents:{agents.API_KEY}",
                "MODEL_ALIASES": json.dumps({CLAUDE_MODEL: "3070", HAIKU_MODEL: "3070"})}

    running = Stack.start(ScriptedModel(), env, tmp_path_factory.mktemp("router"))
    yield running
    running.stop()


def test_claude_code_writes_a_file_with_its_write_tool(clients: Clients, stack: Stack,
                                                       tmp_path: Path) -> None:
    target = tmp_path / "work" / "claude.txt"
    content = "written-by-claude-code-through-messages"
    run = agents.claude_code(clients.claude, stack.router.url, tmp_path,
                             task_prompt(str(target), content), CLAUDE_MODEL, HAIKU_MODEL,
                             stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content
    result = run.json_result()
    assert result["is_error"] is False and result["result"] == DONE_TEXT, result
    call, tool_message = stack.tool_round_trip(content)
    assert call.tool_name == "Write"
    assert str(target) in json.dumps(tool_message["content"])
    stack.assert_routed("/v1/messages", CLAUDE_MODEL, "3070", "agents")
    assert stack.sentinel.attempts == []


def test_codex_writes_a_file_with_its_shell_tool(clients: Clients, stack: Stack,
                                                 tmp_path: Path) -> None:
    target = tmp_path / "work" / "codex.txt"
    content = "written-by-codex-through-responses"
    run = agents.codex(clients.codex, stack.router.url, tmp_path,
                       task_prompt(str(target), content), "3070", stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content + "\n"
    assert DONE_TEXT in run.output, run.describe()
    call, _tool_message = stack.tool_round_trip(content)
    assert call.tool_name in ("exec_command", "shell")
    stack.assert_routed("/v1/responses", "3070", "3070", "agents")
    assert stack.sentinel.attempts == []


def test_opencode_run_writes_a_file_with_its_write_tool(clients: Clients, stack: Stack,
                                                        tmp_path: Path) -> None:
    target = tmp_path / "work" / "opencode.txt"
    content = "written-by-opencode-through-chat"
    run = agents.opencode(clients.opencode, stack.router.url, tmp_path,
                          task_prompt(str(target), content), "3070", stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content
    assert DONE_TEXT in run.output, run.describe()
    call, _tool_message = stack.tool_round_trip(content)
    assert call.tool_name == "write"
    stack.assert_routed("/v1/chat/completions", "3070", "3070", "agents")
    assert stack.sentinel.attempts == []


def test_aider_message_edits_a_file(clients: Clients, stack: Stack, tmp_path: Path) -> None:
    content = "written-by-aider-through-chat"
    run = agents.aider(clients.aider, stack.router.url, tmp_path,
                       task_prompt("aider.txt", content), "3070", stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert (tmp_path / "work" / "aider.txt").read_text().strip() == content
    assert "Applied edit to aider.txt" in run.output, run.describe()
    kinds = [rep.kind for _req, rep in stack.exchanges(content)]
    assert "whole_file" in kinds, kinds
    stack.assert_routed("/v1/chat/completions", "3070", "3070", "agents")
    assert stack.sentinel.attempts == []


def test_continue_cli_writes_a_file_with_its_bash_tool(clients: Clients, stack: Stack,
                                                       tmp_path: Path) -> None:
    """`cn -p` with a local config.yaml (model `auto`, no hub sign-in) runs the task with its
    Bash tool (headless cn offers no Write tool).

    cn has its own sentinel: it makes one request no setting turns off (a version check at
    every start, see agents.CONTINUE_VERSION_PING), which must be that request and nothing
    else; seeing it also proves the preload sends Node's built-in fetch to the proxy."""
    target = tmp_path / "work" / "continue.txt"
    content = "written-by-continue-through-chat"
    sentinel = stack.loop.call(EgressSentinel().start())
    try:
        run = agents.continue_cli(clients.continue_cli, clients.undici, stack.router.url,
                                  tmp_path, task_prompt(str(target), content), "auto",
                                  sentinel.env())
    finally:
        stack.loop.call(sentinel.stop())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content + "\n"
    assert run.stdout.strip() == DONE_TEXT, run.describe()
    call, _tool_message = stack.tool_round_trip(content)
    assert call.tool_name == "Bash"
    assert str(target) in json.loads(call.arguments)["command"]
    stack.assert_routed("/v1/chat/completions", "auto", "3070", "agents")
    assert sentinel.attempts == [agents.CONTINUE_VERSION_PING]
