"""Settings parse the seed's names exactly and fail loudly; token estimates work offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.core import tokens
from router.settings import DEFAULT_ALIASES, ConfigError, Settings


def test_defaults_match_the_spec():
    s = Settings.from_env({})
    assert s.local_3070_url == "http://127.0.0.1:8001"
    assert s.gaming_pc_url is None and s.opencode_url is None
    assert (s.small_token_threshold, s.medium_token_threshold) == (2000, 16000)
    assert s.database_url == "sqlite:///data/router.db"
    assert (s.host, s.port, s.health_check_interval, s.log_level) == ("127.0.0.1", 8000, 15.0, "INFO")
    assert s.model_aliases == DEFAULT_ALIASES


def test_seed_names_are_read():
    s = Settings.from_env({
        "LOCAL_3070_URL": "http://10.0.0.5:8001/", "GAMING_PC_URL": "http://pc:8001",
        "OPENCODE_URL": "http://oc:8002", "SMALL_TOKEN_THRESHOLD": "1000", "MEDIUM_TOKEN_THRESHOLD": "9000",
        "ROUTER_API_KEYS": "alice:k1, bob:k2", "MODEL_ALIASES": '{"coder": "3090", "smart": "opencode:claude"}',
        "MATTERMOST_ADMINS": "@root, alice", "HEALTH_CHECK_INTERVAL": "2.5", "LOG_LEVEL": "debug"})
    assert s.local_3070_url == "http://10.0.0.5:8001"
    assert s.resolved_gaming_mode_url == "http://pc:8001/status"
    assert s.api_keys == {"k1": "alice", "k2": "bob"}
    assert s.model_aliases["coder"] == "3090" and s.model_aliases["small"] == "3070"
    assert s.mattermost_admins == frozenset({"root", "alice"})
    assert s.health_check_interval == 2.5
    assert "k1" not in repr(s.public())


@pytest.mark.parametrize("env,names", [
    ({"LOCAL_3070_URL": "localhost:8001"}, "LOCAL_3070_URL"),
    ({"SMALL_TOKEN_THRESHOLD": "lots"}, "SMALL_TOKEN_THRESHOLD"),
    ({"SMALL_TOKEN_THRESHOLD": "20000"}, "MEDIUM_TOKEN_THRESHOLD"),
    ({"ROUTER_API_KEYS": "justakey"}, "ROUTER_API_KEYS"),
    ({"MODEL_ALIASES": "[1]"}, "MODEL_ALIASES"),
    ({"MODEL_ALIASES": '{"x": "gpu9"}'}, "MODEL_ALIASES"),
    ({"OPENCODE_API": "grpc"}, "OPENCODE_API"),
    ({"DATABASE_URL": "postgres://x"}, "DATABASE_URL"),
    ({"MATTERMOST_URL": "https://mm.example"}, "MATTERMOST_TOKEN"),
    ({"MATTERMOST_VERIFY_TLS": "maybe"}, "MATTERMOST_VERIFY_TLS"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"OPENCODE_URL": "http://u:p@oc:8002", "OPENCODE_API_KEY": "k"}, "OPENCODE_API_KEY"),
])
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_toml_file_adds_the_same_keys(tmp_path: Path):
    config = tmp_path / "router.toml"
    config.write_text('small_token_threshold = 500\nmodel_aliases = { coder = "3090" }\n')
    s = Settings.from_env({"ROUTER_CONFIG": str(config), "MEDIUM_TOKEN_THRESHOLD": "4000"})
    assert (s.small_token_threshold, s.medium_token_threshold) == (500, 4000)
    assert s.model_aliases["coder"] == "3090"
    config.write_text("unknown_key = 1\n")
    with pytest.raises(ConfigError, match="unknown_key"):
        Settings.from_env({"ROUTER_CONFIG": str(config)})


def test_encoding_loads_with_no_network(tmp_path: Path):
    """In a fresh interpreter whose sockets refuse every non-loopback address."""
    code = (
        "import socket\n"
        "real = socket.socket.connect\n"
        "def guard(self, addr):\n"
        "    raise OSError(f'network access attempted: {addr}')\n"
        "socket.socket.connect = guard\n"
        "from router.core import tokens\n"
        "print(tokens.count_text('hello world'))\n")
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                            cwd=Path(__file__).parents[2], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_estimate_counts_text_tools_and_images():
    text_only = {"messages": [{"role": "user", "content": "hello world"}]}
    base = tokens.count_parts(tokens.collect(text_only))
    assert base == 2 + tokens.PER_MESSAGE_TOKENS
    with_image = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello world"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    assert tokens.count_parts(tokens.collect(with_image, image_tokens=765)) == base + 765
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert tokens.count_parts(tokens.collect({**text_only, "tools": tools})) > base + 5


async def test_large_prompt_estimate_is_close_and_offloaded():
    text = "The quick brown fox jumps over the lazy dog. " * 1600  # ~16k tokens
    body = {"messages": [{"role": "user", "content": text}]}
    estimate = await tokens.estimate(body)
    assert 16_000 <= estimate <= 16_010
    huge = {"messages": [{"role": "user", "content": "abcd" * 300_000}]}  # beyond the exact limit
    assert await tokens.estimate(huge) > 250_000
