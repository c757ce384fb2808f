"""The host's model config: which models this GPU host serves and how to launch vLLM for each.

A config is a TOML file (or a bundled profile under `inference/profiles/`, named without `.toml`):

    [host]
    gpu_name = "RTX 3070"          # informational
    gpu_memory_gb = 8              # used by the fit check when NVML is absent
    max_loaded_models = 1          # models allowed on the GPU at once
    default_model = "qwen2.5-7b"   # chosen for unknown model ids when several are configured

    [[models]]
    id = "qwen2.5-7b"                        # the agent's id (URLs, status)
    model = "Qwen/Qwen2.5-7B-Instruct-AWQ"   # what vLLM loads ({model})
    served_name = "qwen2.5-7b-instruct"      # vLLM --served-model-name, what /v1/models lists
    port = 8101                              # 0 or absent: a free port at each start
    quantization = "awq"
    max_model_len = 8192
    gpu_memory_utilization = 0.90
    command = ["vllm", "serve", "{model}"]   # argv prefix; placeholders below
    extra_args = ["--enforce-eager"]
    env = { VLLM_LOGGING_LEVEL = "INFO" }
    append_standard_flags = true             # add --host/--port/--served-model-name/...
    weights_gb = 5.6                         # fit check inputs (optional)
    kv_bytes_per_token = 57344
    keep_warm = false                        # start with the agent and after gaming mode;
                                             # never stopped for idleness
    idle_action = "stop"                     # "stop" or "sleep" (vLLM sleep mode, CUDA only)

`idle_action = "sleep"` launches vLLM with `--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`
and puts an idle model to sleep (`POST /sleep?level=1`) instead of stopping it; an engine
without sleep support (the CPU build refuses the flag; others answer `/sleep` with an error) is
relaunched without the flag and stopped when idle instead. A keep-warm model with `"sleep"` is
put to sleep when idle; with `"stop"` it stays ready.

Placeholders `{model}`, `{port}`, `{served_name}`, `{max_model_len}` and `{id}` are replaced in
`command`, `extra_args` and `env` values. `load_config` raises `ConfigError` naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_COMMAND = ("vllm", "serve", "{model}")
_MODEL_KEYS = {
    "id", "model", "served_name", "port", "quantization", "max_model_len",
    "gpu_memory_utilization", "command", "extra_args", "env", "append_standard_flags",
    "weights_gb", "kv_bytes_per_token", "params_billion", "aliases", "dtype",
    "keep_warm", "idle_action",
}
IDLE_ACTIONS = ("stop", "sleep")
_HOST_KEYS = {"gpu_name", "gpu_memory_gb", "max_loaded_models", "default_model"}


class ConfigError(ValueError):
    """The model config is missing or malformed; the message names the file and key."""


@dataclass(frozen=True)
class ModelProfile:
    """One model this host can serve, and the argv that launches vLLM for it."""

    id: str
    model: str
    served_name: str
    port: int = 0
    quantization: str | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    command: tuple[str, ...] = DEFAULT_COMMAND
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    append_standard_flags: bool = True
    aliases: tuple[str, ...] = ()
    weights_gb: float | None = None
    kv_bytes_per_token: int | None = None
    params_billion: float | None = None
    keep_warm: bool = False
    idle_action: str = "stop"

    def names(self) -> set[str]:
        """Every model id a request may use to select this profile."""
        return {self.id, self.served_name, self.model, *self.aliases}

    def _fill(self, text: str, port: int) -> str:
        return text.format(
            model=self.model, port=port, served_name=self.served_name, id=self.id,
            max_model_len=self.max_model_len or "",
        )

    def argv(self, port: int) -> list[str]:
        """The full launch argv for `port`, placeholders filled."""
        args = [self._fill(part, port) for part in self.command]
        if self.append_standard_flags:
            args += ["--host", "127.0.0.1", "--port", str(port)]
            args += ["--served-model-name", self.served_name]
            if self.max_model_len is not None:
                args += ["--max-model-len", str(self.max_model_len)]
            if self.gpu_memory_utilization is not None:
                args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
            if self.quantization:
                args += ["--quantization", self.quantization]
            if self.dtype:
                args += ["--dtype", self.dtype]
        args += [self._fill(part, port) for part in self.extra_args]
        return args

    def launch_env(self, port: int) -> dict[str, str]:
        """Extra environment for the vLLM process, placeholders filled."""
        return {key: self._fill(value, port) for key, value in self.env.items()}


@dataclass(frozen=True)
class HostConfig:
    """The whole config: host facts and the models, in file order."""

    models: tuple[ModelProfile, ...]
    max_loaded_models: int = 1
    default_model: str | None = None
    gpu_name: str | None = None
    gpu_memory_gb: float | None = None
    source: str = "<memory>"

    def get(self, model_id: str) -> ModelProfile | None:
        """The profile whose agent id is `model_id`."""
        return next((m for m in self.models if m.id == model_id), None)

    def resolve(self, requested: str | None) -> ModelProfile | None:
        """The profile a request for `requested` goes to, or None.

        One configured model takes every request (the router may send an alias); with several,
        a match on id, served name, model path or alias wins, else the default model.
        """
        if len(self.models) == 1:
            return self.models[0]
        if requested:
            for profile in self.models:
                if requested in profile.names():
                    return profile
        return self.get(self.default_model) if self.default_model else None


def _type_check(where: str, key: str, value: Any, kinds: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}: {key} must be {kinds[0].__name__}, got {value!r}")
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}: {key} must be {kinds[0].__name__}, got {value!r}")


def _str_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _profile(source: str, index: int, raw: Any) -> ModelProfile:
    where = f"{source}: models[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {min(unknown)!r}")
    for key in ("id", "model"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: {key} is required and must be a non-empty string")
    where = f"{source}: model {raw['id']!r}"
    kinds: dict[str, tuple[type, ...]] = {
        "served_name": (str,), "port": (int,), "quantization": (str,), "max_model_len": (int,),
        "gpu_memory_utilization": (float, int), "append_standard_flags": (bool,),
        "weights_gb": (float, int), "kv_bytes_per_token": (int,),
        "params_billion": (float, int), "dtype": (str,), "keep_warm": (bool,),
        "idle_action": (str,),
    }
    for key, kind in kinds.items():
        if key in raw:
            _type_check(where, key, raw[key], kind)
    util = raw.get("gpu_memory_utilization")
    if util is not None and not 0 < float(util) <= 1:
        raise ConfigError(f"{where}: gpu_memory_utilization must be in (0, 1], got {util!r}")
    idle_action = raw.get("idle_action", "stop")
    if idle_action not in IDLE_ACTIONS:
        raise ConfigError(
            f"{where}: idle_action must be \"stop\" or \"sleep\", got {idle_action!r}"
        )
    port = raw.get("port", 0)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port must be between 0 and 65535, got {port!r}")
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}: env must be a table of strings")
    command = _str_list(where, "command", raw.get("command", list(DEFAULT_COMMAND)))
    if not command:
        raise ConfigError(f"{where}: command must not be empty")
    profile = ModelProfile(
        id=raw["id"], model=raw["model"], served_name=str(raw.get("served_name", raw["id"])),
        port=port, quantization=raw.get("quantization"), max_model_len=raw.get("max_model_len"),
        gpu_memory_utilization=None if util is None else float(util), dtype=raw.get("dtype"),
        command=command, extra_args=_str_list(where, "extra_args", raw.get("extra_args", [])),
        env=dict(env), append_standard_flags=raw.get("append_standard_flags", True),
        aliases=_str_list(where, "aliases", raw.get("aliases", [])),
        weights_gb=_opt_float(raw.get("weights_gb")),
        kv_bytes_per_token=raw.get("kv_bytes_per_token"),
        params_billion=_opt_float(raw.get("params_billion")),
        keep_warm=raw.get("keep_warm", False), idle_action=idle_action,
    )
    try:
        profile.argv(port or 1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: bad placeholder in command or extra_args: {exc}") from None
    return profile


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_config(data: dict[str, Any], source: str = "<memory>") -> HostConfig:
    """Validate a decoded TOML document; raises `ConfigError` naming the offending key."""
    host = data.get("host", {})
    if not isinstance(host, dict):
        raise ConfigError(f"{source}: [host] must be a table")
    unknown = set(host) - _HOST_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key host.{min(unknown)}")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError(f"{source}: at least one [[models]] entry is required")
    models = tuple(_profile(source, i, raw) for i, raw in enumerate(raw_models))
    ids = [m.id for m in models]
    for model_id in ids:
        if ids.count(model_id) > 1:
            raise ConfigError(f"{source}: duplicate name {model_id!r}: model ids must be unique")
    seen: dict[str, str] = {}
    for profile in models:
        for name in sorted({profile.id, profile.served_name, *profile.aliases}):
            if name in seen and seen[name] != profile.id:
                raise ConfigError(
                    f"{source}: duplicate name {name!r} in models {seen[name]!r} and {profile.id!r}"
                )
            seen[name] = profile.id
    max_loaded = host.get("max_loaded_models", 1)
    _type_check(f"{source}", "host.max_loaded_models", max_loaded, (int,))
    if max_loaded < 1:
        raise ConfigError(f"{source}: host.max_loaded_models must be at least 1")
    default = host.get("default_model", models[0].id)
    if not any(m.id == default for m in models):
        raise ConfigError(f"{source}: host.default_model {default!r} is not a configured model id")
    memory = host.get("gpu_memory_gb")
    if memory is not None:
        _type_check(source, "host.gpu_memory_gb", memory, (float, int))
    return HostConfig(
        models=models, max_loaded_models=max_loaded, default_model=default,
        gpu_name=host.get("gpu_name"), gpu_memory_gb=_opt_float(memory), source=source,
    )


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped in `inference/profiles/`."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_config(name_or_path: str) -> HostConfig:
    """Load a TOML config from a path, or a bundled profile by name (blocking file read)."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        bundled = PROFILES_DIR / f"{name_or_path}.toml"
        if not bundled.exists():
            raise ConfigError(
                f"INFERENCE_CONFIG {name_or_path!r} is neither a file nor a bundled profile "
                f"({', '.join(bundled_profiles())})"
            )
        path = bundled
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, str(path))
