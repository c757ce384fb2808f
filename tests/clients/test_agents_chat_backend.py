"""Real coding agents finish a one-tool-call task through the router, whose model speaks Chat only.

One router serves the module; its only backend (`3070`) is tests/fakes/scripted_model.py, which
serves `/v1/chat/completions` and nothing else, so Claude Code's Messages requests and Codex's
Responses requests reach it only through the router's translation layer (tool definitions, the
streamed tool call, the tool result and the final text, both ways). Each agent must write a file
with its OWN tool (the test reads the file), the scripted model must have seen the tool result,
the router must have logged the wire API that came in, and no client may try to reach the
internet (the egress sentinel is every client's proxy).

Installs (pinned, cached): tests/clients/clients_env.py. Takes a minute or two when cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients import agents
from tests.clients.clients_env import Clients, ensure_clients
from tests.clients.stack import EgressSentinel, Loop, RunningRouter, start_router
from tests.conftest import decision_rows
from tests.fakes.scripted_model import DONE_TEXT, ScriptedModel, task_prompt

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# The ids Claude Code sends for its main and its small background model, made routable with
# exact aliases (a config file would use the globs "claude-sonnet-*" / "claude-haiku-*").
CLAUDE_MODEL = "claude-sonnet-5-5"
HAIKU_MODEL = "claude-haiku-5-5"


@dataclass
class Stack:
    loop: Loop
    model: ScriptedModel
    router: RunningRouter
    sentinel: EgressSentinel

    def exchanges(self, marker: str) -> list[tuple[dict[str, Any], Any]]:
        """(request, reply) pairs the scripted model handled whose request mentions `marker`."""
        async def snapshot() -> list[tuple[dict[str, Any], Any]]:
            return list(zip(self.model.requests, self.model.replies))
        return [(req, rep) for req, rep in self.loop.call(snapshot())
                if marker in json.dumps(req["messages"])]

    def rows(self) -> list[Any]:
        return self.loop.call(decision_rows(self.router))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def clients() -> Clients:
    return ensure_clients()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    loop = Loop()
    model = loop.call(ScriptedModel().start())
    sentinel = loop.call(EgressSentinel().start())
    env = {"LOCAL_3070_URL": model.url,
           "MODEL_ALIASES": json.dumps({CLAUDE_MODEL: "3070", HAIKU_MODEL: "3070"})}
    router = loop.call(start_router(env, tmp_path_factory.mktemp("router")))
    yield Stack(loop, model, router, sentinel)
    loop.call(router.runner.cleanup())
    loop.call(model.stop())
    loop.call(sentinel.stop())
    loop.close()


def tool_round_trip(stack: Stack, marker: str) -> tuple[Any, dict[str, Any]]:
    """The scripted tool call for the task with `marker`, and the tool message that answered it."""
    exchanges = stack.exchanges(marker)
    calls = [rep for _req, rep in exchanges if rep.kind == "tool_call"]
    assert len(calls) == 1, f"expected one scripted tool call, got {[r.kind for _q, r in exchanges]}"
    call = calls[0]
    results = [m for req, _rep in exchanges for m in req["messages"]
               if m.get("role") == "tool" and m.get("tool_call_id") == call.call_id]
    assert results, f"the model never saw the result of {call.tool_name} ({call.call_id})"
    assert any(rep.kind == "final" for _req, rep in exchanges), "no final answer was scripted"
    return call, results[-1]


def assert_routed(stack: Stack, endpoint: str, model: str) -> None:
    rows = [r for r in stack.rows() if r.endpoint == endpoint and r.requested_model == model]
    assert rows, f"no decision row for {endpoint} with model {model}"
    assert all(r.backend == "3070" and r.status_code == 200 for r in rows), \
        [(r.backend, r.status_code, r.error) for r in rows]


def test_claude_code_writes_a_file_with_its_write_tool(clients: Clients, stack: Stack,
                                                       tmp_path: Path) -> None:
    target = tmp_path / "work" / "claude.txt"
    content = "written-by-claude-code-through-messages"
    run = agents.claude_code(clients.claude, stack.router.url, tmp_path,
                             task_prompt(str(target), content), CLAUDE_MODEL, HAIKU_MODEL,
                             stack.sentinel.env())
    assert run.returncode == 0, run.describe()
    assert target.read_text() == content
    result = json.loads(run.output.split("\n--- stderr ---\n")[0])
    assert result["is_error"] is False and result["result"] == DONE_TEXT, result
    call, tool_message = tool_round_trip(stack, content)
    assert call.tool_name == "Write"
    assert str(target) in json.dumps(tool_message["content"])
    assert_routed(stack, "/v1/messages", CLAUDE_MODEL)
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
    call, _tool_message = tool_round_trip(stack, content)
    assert call.tool_name in ("exec_command", "shell")
    assert_routed(stack, "/v1/responses", "3070")
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
    call, _tool_message = tool_round_trip(stack, content)
    assert call.tool_name == "write"
    assert_routed(stack, "/v1/chat/completions", "3070")
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
    assert_routed(stack, "/v1/chat/completions", "3070")
    assert stack.sentinel.attempts == []
