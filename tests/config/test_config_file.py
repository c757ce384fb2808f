"""The home-lab file: strict parsing with errors naming file, table and key; `config check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.config import load_topology
from router.settings import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.toml"))
SECRETS = {"ZAI_API_KEY": "zai-Sekr3t-value", "ANTHROPIC_API_KEY": "sk-ant-Sekr3t-value",
           "OPENROUTER_API_KEY": "sk-or-Sekr3t-value"}
GOOD = """
fallback = ["gpu", "cloud"]

[router]
small_token_threshold = 1000

[backends.gpu]
kind = "agent"
url = "http://gpu-host:8001"
gaming = true

[backends.cloud]
kind = "openai"
url = "https://api.example.com/v1"
api_key = "${CLOUD_KEY}"
models = ["big-model"]
[backends.cloud.defaults]
temperature = 0.6

[aliases]
coder = "cloud:big-model"
"claude-haiku-*" = "gpu"

[[rules]]
when = { gaming_mode = true, force_big = false }
to = ["cloud"]
reason = "gaming_mode"
"""


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    environ = {"ROUTER_CONFIG": str(path), **(env if env is not None else {"CLOUD_KEY": "Sekr3t"})}
    return load_topology(str(path), Settings.from_env(environ), environ), path


def test_a_good_file(tmp_path: Path) -> None:
    topology, _ = _load(tmp_path, GOOD)
    assert list(topology.backends) == ["gpu", "cloud"]
    gpu, cloud = topology.backends["gpu"], topology.backends["cloud"]
    assert gpu.gaming and gpu.status_url == "http://gpu-host:8001/status"
    assert cloud.api_key == "Sekr3t" and "Sekr3t" not in repr(cloud)
    assert dict(cloud.defaults) == {"temperature": 0.6}
    assert topology.aliases["coder"] == "cloud:big-model"
    assert topology.alias_target("claude-haiku-4-5-20251001") == "gpu"
    assert topology.alias_target("claude-sonnet-4-5") is None
    assert [r.reason for r in topology.rules] == ["gaming_mode"]
    assert topology.fallback == ("gpu", "cloud")


def test_without_rules_the_seed_rules_apply_to_the_backends_that_exist(tmp_path: Path) -> None:
    text = '[backends.3070]\nkind = "agent"\nurl = "http://a:1"\n[backends.3090]\nkind = "agent"\nurl = "http://b:1"\ngaming = true\n'
    topology, _ = _load(tmp_path, text)
    assert [r.reason for r in topology.rules] == ["gaming_mode", "force_big", "small_request",
                                                  "medium_request"]
    assert topology.aliases["big"] == "3090" and "glm" not in topology.aliases


@pytest.mark.parametrize("change,words", [
    (('kind = "openai"\nurl = "https://api.example.com/v1"', 'kind = "openai"\nurl = "https://api.example.com/v1"\nlable = "x"'),
     ["lab.toml", "[backends.cloud]", "'lable'", "not a backend key"]),
    (('api_key = "${CLOUD_KEY}"', 'api_key = "${MISSING_KEY}"'),
     ["[backends.cloud]", "'api_key'", "${MISSING_KEY}", "not set"]),
    (('to = ["cloud"]', 'to = ["clod"]'), ["[rules[0]]", "'to'", "unknown backend 'clod'"]),
    (('when = { gaming_mode = true, force_big = false }', 'when = { gaming = true }'),
     ["[rules[0]]", "'when.gaming'", "not a condition"]),
    (('when = { gaming_mode = true, force_big = false }', 'when = { tokens_below = "many" }'),
     ["[rules[0]]", "'when.tokens_below'", "an integer"]),
    (('kind = "agent"', 'kind = "vllm"'), ["[backends.gpu]", "'kind'", "openai, agent, opencode, anthropic"]),
    (('coder = "cloud:big-model"', 'coder = "nowhere"'), ["[aliases]", "'coder'", "unknown backend 'nowhere'"]),
    (('fallback = ["gpu", "cloud"]', 'fallback = ["gpu", "gone"]'), ["'fallback'", "'gone'"]),
    (('url = "http://gpu-host:8001"', 'url = "gpu-host:8001"'), ["[backends.gpu]", "'url'", "http(s) URL"]),
    (('small_token_threshold = 1000', 'small_tokens = 1000'), ["[router]", "'small_tokens'"]),
    (('[backends.cloud]\n', '[backends.Cloud_1]\n'), ["[backends.Cloud_1]", "lower-case"]),
])
def test_bad_files_name_the_file_table_and_key(tmp_path: Path, change: tuple[str, str],
                                               words: list[str]) -> None:
    old, new = change
    assert old in GOOD
    path = tmp_path / "lab.toml"
    path.write_text(GOOD.replace(old, new, 1))
    environ = {"ROUTER_CONFIG": str(path), "CLOUD_KEY": "k"}
    with pytest.raises(ConfigError) as caught:
        load_topology(str(path), Settings.from_env(environ), environ)
    for word in words:
        assert word in str(caught.value)


def test_an_anthropic_backend_needs_a_key_and_defaults_to_anthropic(tmp_path: Path) -> None:
    topology, _ = _load(tmp_path, '[backends.claude]\nkind = "anthropic"\napi_key = "${K}"\n', {"K": "sk"})
    claude = topology.backends["claude"]
    assert (claude.url, claude.apis) == ("https://api.anthropic.com", frozenset({"messages"}))
    with pytest.raises(ConfigError, match=r"\[backends.claude\] key 'api_key' is required"):
        _load(tmp_path, '[backends.claude]\nkind = "anthropic"\n', {})


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router.cli", "config", "check", *args],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                               "COLUMNS": "200", **env},
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_config_check_passes_on_every_example(example: Path) -> None:
    result = _cli(str(example), env=SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{example}: OK" in result.stdout.replace("\n", "")
    assert "Backends" in result.stdout and "Rules" in result.stdout
    for secret in SECRETS.values():
        assert secret not in result.stdout + result.stderr


def test_config_check_names_the_problem_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(GOOD.replace('gaming = true', 'gaming = true\nconcurency = 2'))
    result = _cli(str(path), env={"CLOUD_KEY": "k"})
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert f"{path}: [backends.gpu] key 'concurency' is not a backend key" in text


def test_config_check_without_a_file_shows_the_environment_lab() -> None:
    result = _cli(env={"LOCAL_3070_URL": "http://127.0.0.1:8001", "GAMING_PC_URL": "http://pc:8001"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the environment: OK" in result.stdout
    assert "small_request" in result.stdout and "3090" in result.stdout
