"""Run each real coding agent once, headless, against a router URL, in a private home; offline.

Every runner builds the client's environment from scratch (PATH, a private HOME under `root`,
the egress sentinel's proxy variables, and the client's own settings), so neither the developer's
keys nor their config files can leak in, and every switch that keeps the client off the internet
is set explicitly. docs/clients.md documents the same settings for people.

Each returns an `AgentRun` (exit code, output, the work directory); none raises on a failing
agent, so the test can show the output in its assertion message. Blocking; `timeout` bounds each.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.opencode_env import OFFLINE_ENV as OPENCODE_OFFLINE_ENV
from tests.e2e.opencode_env import OPENCODE_VERSION

CLIENT_TIMEOUT = 180.0
API_KEY = "sk-local-router-test"

# Claude Code: documented switches (settings docs, "Environment variables").
CLAUDE_OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # = autoupdater, bug command, error reporting,
    "DISABLE_AUTOUPDATER": "1",                       #   telemetry off; spelled out anyway
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}


@dataclass
class AgentRun:
    name: str
    returncode: int
    output: str
    workdir: Path

    stdout: str = ""

    def describe(self) -> str:
        return f"{self.name} exited {self.returncode}; output tail:\n{self.output[-4000:]}"

    def json_result(self) -> dict[str, Any]:
        """The JSON object a client printed on stdout (Claude Code's `--output-format json`)."""
        value = json.loads(self.stdout)
        assert isinstance(value, dict), self.describe()
        return value


def _base_env(home: Path, proxy_env: dict[str, str]) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1", "CI": "1",
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local/state"),
            **proxy_env}


def _run(name: str, cmd: list[str], env: dict[str, str], workdir: Path,
         timeout: float) -> AgentRun:
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
        return AgentRun(name, proc.returncode, proc.stdout + "\n--- stderr ---\n" + proc.stderr,
                        workdir, proc.stdout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        return AgentRun(name, -1, f"timed out after {timeout:g}s\n{out}", workdir)


def claude_code(binary: Path, router_url: str, root: Path, prompt: str, model: str,
                small_model: str, proxy_env: dict[str, str],
                timeout: float = CLIENT_TIMEOUT) -> AgentRun:
    """`claude -p PROMPT` with ANTHROPIC_BASE_URL at the router; tools run without asking."""
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    env = _base_env(root / "home", proxy_env)
    env.update(CLAUDE_OFFLINE_ENV)
    env.update({
        "ANTHROPIC_BASE_URL": router_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_MODEL": model,
        # The small model Claude Code uses for background work (both the current and the
        # older name of the variable).
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": small_model,
        "ANTHROPIC_SMALL_FAST_MODEL": small_model,
        "IS_SANDBOX": "1",  # root may skip permissions inside a sandbox
        "CLAUDE_CODE_MAX_RETRIES": "1",  # a broken router fails the test fast, not after minutes
    })
    cmd = [str(binary), "-p", prompt, "--dangerously-skip-permissions", "--model", model,
           "--output-format", "json", "--max-turns", "4"]
    return _run("claude-code", cmd, env, workdir, timeout)


def codex_config(router_url: str, model: str) -> str:
    """$CODEX_HOME/config.toml: the router as a Responses provider; analytics, feedback, update
    checks, plugin/connector syncs and the hosted web-search tool off."""
    return f"""model = "{model}"
model_provider = "local-ai-router"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.local-ai-router]
name = "local-ai-router"
base_url = "{router_url}/v1"
env_key = "LOCAL_AI_ROUTER_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

# Plugins and connectors sync a curated marketplace from github.com and chatgpt.com at start.
[features]
plugins = false
remote_plugin = false
plugin_sharing = false
apps = false
"""


def codex(binary: Path, router_url: str, root: Path, prompt: str, model: str,
          proxy_env: dict[str, str], timeout: float = CLIENT_TIMEOUT) -> AgentRun:
    """`codex exec PROMPT` with a custom provider on wire_api = "responses"."""
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    codex_home = root / "codex-home"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(router_url, model))
    env = _base_env(root / "home", proxy_env)
    env.update({"CODEX_HOME": str(codex_home), "LOCAL_AI_ROUTER_KEY": API_KEY})
    cmd = [str(binary), "exec", "--skip-git-repo-check", "--color", "never",
           # The test box has no sandboxing support; the agent only writes in its workdir.
           "--dangerously-bypass-approvals-and-sandbox", "-C", str(workdir), prompt]
    return _run("codex", cmd, env, workdir, timeout)


def opencode_config(router_url: str, model: str) -> dict[str, object]:
    """opencode.json: the router as an OpenAI-compatible provider; sharing and updates off."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": f"local-ai-router/{model}",
        "small_model": f"local-ai-router/{model}",
        "provider": {"local-ai-router": {
            "npm": "@ai-sdk/openai-compatible", "name": "local-ai-router",
            "options": {"baseURL": f"{router_url}/v1", "apiKey": API_KEY},
            "models": {model: {"name": model, "tool_call": True,
                               "limit": {"context": 32768, "output": 4096}}}}},
        "permission": {"*": "allow"},
    }


def seed_opencode_config_dir(config_dir: Path) -> None:
    """Mark @opencode-ai/plugin as installed in opencode's config directory.

    At every start opencode npm-installs `@opencode-ai/plugin` into each config directory whose
    node_modules is missing or whose package-lock.json lacks it (for local plugins' types), and
    no switch turns that off; a directory that already lists it is left alone."""
    dependencies = {"@opencode-ai/plugin": OPENCODE_VERSION}
    (config_dir / "node_modules").mkdir(parents=True, exist_ok=True)
    (config_dir / "package.json").write_text(json.dumps({"dependencies": dependencies}))
    (config_dir / "package-lock.json").write_text(json.dumps(
        {"lockfileVersion": 3, "packages": {"": {"dependencies": dependencies}}}))


def opencode(binary: Path, router_url: str, root: Path, prompt: str, model: str,
             proxy_env: dict[str, str], timeout: float = CLIENT_TIMEOUT) -> AgentRun:
    """`opencode run PROMPT` with a custom OpenAI-compatible provider at the router."""
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    config = root / "opencode.json"
    config.write_text(json.dumps(opencode_config(router_url, model), indent=2))
    env = _base_env(root / "home", proxy_env)
    env.update(OPENCODE_OFFLINE_ENV)
    env["OPENCODE_CONFIG"] = str(config)
    seed_opencode_config_dir(Path(env["XDG_CONFIG_HOME"]) / "opencode")
    cmd = [str(binary), "run", "-m", f"local-ai-router/{model}", prompt]
    return _run("opencode", cmd, env, workdir, timeout)


# Continue's CLI (`cn`): its switches, read from the 1.5.47 sources shipped in the npm package.
CONTINUE_OFFLINE_ENV = {
    "CONTINUE_CLI_ENABLE_TELEMETRY": "0",  # OpenTelemetry metrics (only exported when OTEL_*
    "CONTINUE_METRICS_ENABLED": "0",       #   endpoints are set; off regardless)
}
# The one request cn makes that no setting turns off: at every start (even `cn --version`) it
# fetches `https://api.continue.dev/cn/info?id=<machine id>` for the latest version, with Node's
# built-in fetch, which ignores HTTP(S)_PROXY before Node 22.21 / 24.5 (NODE_USE_ENV_PROXY). The
# runner preloads a dispatcher that honours them, so the sentinel sees it (and refuses it; cn
# only logs a debug line). Continue's own HTTP client (the model calls) honours them anyway.
CONTINUE_VERSION_PING = "CONNECT api.continue.dev:443 HTTP/1.1"

_NODE_PROXY_PRELOAD = """\
// Make Node's built-in fetch honour HTTP(S)_PROXY / NO_PROXY, as Node >= 22.21 does with
// NODE_USE_ENV_PROXY=1, so the client tier's egress sentinel sees every request.
const {{ EnvHttpProxyAgent, setGlobalDispatcher }} = require({undici});
setGlobalDispatcher(new EnvHttpProxyAgent());
"""


def continue_config(router_url: str, model: str) -> str:
    """cn's config.yaml (the IDE extensions' format): the router as an OpenAI provider."""
    return f"""name: local-ai-router
version: 1.0.0
schema: v1
models:
  - name: local-ai-router
    provider: openai
    model: {model}
    apiBase: {router_url}/v1
    apiKey: {API_KEY}
    roles: [chat, edit, apply]
"""


def continue_cli(binary: Path, undici: Path, router_url: str, root: Path, prompt: str,
                 model: str, proxy_env: dict[str, str],
                 timeout: float = CLIENT_TIMEOUT) -> AgentRun:
    """`cn -p PROMPT --config config.yaml`: headless, no sign-in to Continue's hub.

    Headless cn allows its Bash tool and leaves out Write/Edit (they "ask", and nobody can
    answer); the update check and auto-update only run in the interactive TUI."""
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    config = root / "continue-config.yaml"
    config.write_text(continue_config(router_url, model))
    preload = root / "node-env-proxy.cjs"
    preload.write_text(_NODE_PROXY_PRELOAD.format(undici=json.dumps(str(undici))))
    env = _base_env(root / "home", proxy_env)
    env.update(CONTINUE_OFFLINE_ENV)
    env.update({"CONTINUE_GLOBAL_DIR": str(root / "continue-home"),  # sessions, logs, state
                "NODE_OPTIONS": f"--require {json.dumps(str(preload))}"})
    cmd = [str(binary), "-p", prompt, "--config", str(config)]
    return _run("continue", cmd, env, workdir, timeout)


def aider_model_metadata(model: str) -> dict[str, object]:
    return {f"openai/{model}": {"max_input_tokens": 32768, "max_output_tokens": 4096,
                                "input_cost_per_token": 0, "output_cost_per_token": 0,
                                "litellm_provider": "openai", "mode": "chat"}}


def aider(binary: Path, router_url: str, root: Path, prompt: str, model: str,
          proxy_env: dict[str, str], timeout: float = CLIENT_TIMEOUT) -> AgentRun:
    """`aider --message PROMPT` with the router as an OpenAI-compatible API, whole-file edits."""
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    # Aider downloads litellm's price list unless the model is described locally.
    metadata = root / "aider.model.metadata.json"
    metadata.write_text(json.dumps(aider_model_metadata(model)))
    env = _base_env(home, proxy_env)
    env.update({"OPENAI_API_BASE": f"{router_url}/v1", "OPENAI_API_KEY": API_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    cmd = [str(binary), "--model", f"openai/{model}", "--model-metadata-file", str(metadata),
           "--edit-format", "whole", "--no-git",
           "--yes-always", "--no-check-update", "--analytics-disable", "--no-show-release-notes",
           "--no-show-model-warnings", "--map-tokens", "0", "--no-detect-urls", "--no-pretty",
           "--message", prompt]
    return _run("aider", cmd, env, workdir, timeout)
