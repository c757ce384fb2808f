"""Settings from the environment, the TOML model config, the fit check and gaming persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.config import ConfigError, bundled_profiles, load_config, parse_config
from inference.fit import check_fit, required_gb
from inference.gaming import GamingModeStore, is_force_big
from inference.settings import Settings, SettingsError


# -- settings ----------------------------------------------------------------------------------
def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.idle_shutdown_minutes == 10
    assert settings.idle_shutdown_seconds == 600
    assert settings.config == "rtx3070-8gb"
    assert settings.stream_keepalive == 5.0


def test_settings_read_every_variable(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "INFERENCE_HOST": "0.0.0.0", "INFERENCE_PORT": "9001", "INFERENCE_CONFIG": "x.toml",
        "IDLE_SHUTDOWN_MINUTES": "2.5", "INFERENCE_STATE_DIR": str(tmp_path),
        "START_TIMEOUT": "30", "STOP_GRACE": "3", "LOG_LEVEL": "debug",
        "STREAM_KEEPALIVE": "2.5",
    })
    assert settings.stream_keepalive == 2.5
    assert settings.port == 9001 and settings.host == "0.0.0.0"
    assert settings.idle_shutdown_seconds == 150
    assert settings.state_dir == tmp_path
    assert (settings.start_timeout, settings.stop_grace, settings.log_level) == (30, 3, "DEBUG")


@pytest.mark.parametrize(("name", "value"), [
    ("INFERENCE_PORT", "eighty"), ("INFERENCE_PORT", "70000"),
    ("IDLE_SHUTDOWN_MINUTES", "-1"), ("IDLE_SHUTDOWN_MINUTES", "soon"),
    ("START_TIMEOUT", "0"), ("STOP_GRACE", "x"), ("LOG_LEVEL", "LOUD"),
    ("STREAM_KEEPALIVE", "0"), ("STREAM_KEEPALIVE", "often"),
])
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


# -- model config ------------------------------------------------------------------------------
def _model(**extra: Any) -> dict[str, Any]:
    return {"id": "m", "model": "org/m", **extra}


def test_argv_fills_placeholders_and_standard_flags() -> None:
    config = parse_config({"models": [_model(
        served_name="served", quantization="awq", max_model_len=4096,
        gpu_memory_utilization=0.8, command=["py", "-m", "srv", "--model", "{model}"],
        extra_args=["--tag", "{id}-{port}"], env={"PORT_COPY": "{port}"},
    )]})
    profile = config.models[0]
    assert profile.argv(1234) == [
        "py", "-m", "srv", "--model", "org/m", "--host", "127.0.0.1", "--port", "1234",
        "--served-model-name", "served", "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.8", "--quantization", "awq", "--tag", "m-1234",
    ]
    assert profile.launch_env(1234) == {"PORT_COPY": "1234"}


def test_standard_flags_can_be_turned_off() -> None:
    config = parse_config({"models": [_model(
        append_standard_flags=False, command=["srv", "{port}", "{served_name}"])]})
    assert config.models[0].argv(5) == ["srv", "5", "m"]


def test_default_command_is_vllm_serve() -> None:
    profile = parse_config({"models": [_model()]}).models[0]
    assert profile.argv(8101)[:3] == ["vllm", "serve", "org/m"]
    assert (profile.keep_warm, profile.idle_action) == (False, "stop")


def test_keep_warm_and_idle_action_are_read() -> None:
    profile = parse_config({"models": [_model(keep_warm=True, idle_action="sleep")]}).models[0]
    assert (profile.keep_warm, profile.idle_action) == (True, "sleep")


@pytest.mark.parametrize(("data", "message"), [
    ({}, "at least one"),
    ({"models": [{"model": "x"}]}, "id is required"),
    ({"models": [_model(port="80")]}, "port must be int"),
    ({"models": [_model(gpu_memory_utilization=1.5)]}, "gpu_memory_utilization"),
    ({"models": [_model(colour="red")]}, "unknown key 'colour'"),
    ({"models": [_model(command=[])]}, "command must not be empty"),
    ({"models": [_model(command=["x", "{nope}"])]}, "placeholder"),
    ({"models": [_model(), _model()]}, "duplicate name 'm'"),
    ({"models": [_model()], "host": {"default_model": "zz"}}, "host.default_model"),
    ({"models": [_model()], "host": {"max_loaded_models": 0}}, "max_loaded_models"),
    ({"models": [_model()], "host": {"gpus": 2}}, "host.gpus"),
    ({"models": [_model(keep_warm="yes")]}, "keep_warm must be bool"),
    ({"models": [_model(idle_action="hibernate")]}, "idle_action must be \"stop\" or \"sleep\""),
])
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "models.toml")


def test_resolve_single_and_several_models() -> None:
    one = parse_config({"models": [_model()]})
    assert one.resolve("anything") is one.models[0]
    assert one.resolve(None) is one.models[0]
    two = parse_config({
        "host": {"default_model": "b"},
        "models": [_model(), {"id": "b", "model": "org/b", "aliases": ["big"]}],
    })
    assert two.resolve("org/m").id == "m"  # type: ignore[union-attr]
    assert two.resolve("big").id == "b"  # type: ignore[union-attr]
    assert two.resolve("unknown").id == "b"  # type: ignore[union-attr]


def test_load_config_from_file_and_bundled(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[[models]]\nid = "m"\nmodel = "org/m"\n')
    assert load_config(str(path)).models[0].id == "m"
    assert {"rtx3070-8gb", "rtx3090-24gb"} <= set(bundled_profiles())
    with pytest.raises(ConfigError, match="INFERENCE_CONFIG 'nope'"):
        load_config("nope")
    path.write_text("[[models]\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(path))


# -- fit check ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rtx3070-8gb", "rtx3090-24gb"])
def test_bundled_profiles_fit_their_cards(name: str) -> None:
    config = load_config(name)
    assert config.gpu_memory_gb is not None
    assert check_fit(config, None) == []
    assert all(m.quantization and m.quantization.startswith("awq") for m in config.models)


def test_14b_profile_warns_on_an_8gb_card() -> None:
    warnings = check_fit(load_config("rtx3090-24gb"), 8)
    assert warnings and "qwen2.5-14b" in warnings[0] and "GiB" in warnings[0]


def test_fit_estimates_from_params_and_skips_unknowns() -> None:
    config = parse_config({"models": [
        _model(params_billion=14, quantization="awq", gpu_memory_utilization=0.9),
        {"id": "unknown", "model": "x"},
    ]})
    assert required_gb(config.models[0]) == pytest.approx(14e9 * 0.5 * 1.1 / 1024**3 + 1)
    assert required_gb(config.models[1]) is None
    assert check_fit(config, 24) == []
    assert len(check_fit(config, 8)) == 1
    assert check_fit(config, None) == []  # no GPU and no gpu_memory_gb: nothing to say


def test_fit_warns_when_shared_models_overcommit() -> None:
    config = parse_config({"host": {"max_loaded_models": 2}, "models": [
        _model(gpu_memory_utilization=0.6), {"id": "b", "model": "b",
                                              "gpu_memory_utilization": 0.6}]})
    assert any("add up to 1.20" in w for w in check_fit(config, 24))


@given(st.floats(min_value=1, max_value=200), st.floats(min_value=1, max_value=80))
def test_fit_warning_iff_need_exceeds_budget(params: float, memory: float) -> None:
    config = parse_config({"models": [_model(params_billion=params, quantization="awq",
                                             gpu_memory_utilization=0.9)]})
    need = required_gb(config.models[0])
    assert need is not None
    assert bool(check_fit(config, memory)) == (need > memory * 0.9)


# -- gaming mode -------------------------------------------------------------------------------
def test_gaming_mode_persists(tmp_path: Path) -> None:
    store = GamingModeStore(tmp_path)
    assert store.enabled is False
    store.set(True)
    again = GamingModeStore(tmp_path)
    assert again.enabled is True and again.changed_at
    assert json.loads((tmp_path / "gaming_mode.json").read_text())["enabled"] is True


@pytest.mark.parametrize("content", ["{not json", '{"enabled": "yes"}', "[]"])
def test_malformed_gaming_file_means_off(tmp_path: Path, content: str) -> None:
    (tmp_path / "gaming_mode.json").write_text(content)
    assert GamingModeStore(tmp_path).enabled is False


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("1", True), ("yes", True), (" True ", True),
    ("false", False), ("", False), (None, False), ("2", False),
])
def test_force_big_values(value: str | None, expected: bool) -> None:
    assert is_force_big(value) is expected
