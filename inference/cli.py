"""`local-ai-inference`: run the GPU-host agent, or check a model config against the card.

    local-ai-inference serve [--host H] [--port P] [--config NAME_OR_PATH]
    local-ai-inference check [--config NAME_OR_PATH] [--gpu-memory-gb N]
    local-ai-inference profiles

Settings come from the environment (see `inference.settings`); flags override them. A bad value
exits with status 2 and a message naming the variable or key.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from inference.app import create_app
from inference.config import ConfigError, bundled_profiles, load_config
from inference.fit import check_fit, required_gb
from inference.gpu import GpuReader
from inference.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="local-ai-inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the agent HTTP API")
    serve.add_argument("--host", help="bind address (env INFERENCE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="bind port (env INFERENCE_PORT, default 8001)")
    serve.add_argument("--config", help="model config path or bundled profile (INFERENCE_CONFIG)")
    check = sub.add_parser("check", help="warn when a model profile cannot fit the GPU")
    check.add_argument("--config", help="model config path or bundled profile (INFERENCE_CONFIG)")
    check.add_argument("--gpu-memory-gb", type=float,
                       help="card memory to check against (default: NVML, else the config)")
    sub.add_parser("profiles", help="list the bundled model profiles")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(os.environ)
    overrides = {
        key: value for key, value in
        (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)),
         ("config", getattr(args, "config", None)))
        if value is not None
    }
    return dataclasses.replace(settings, **overrides)


def _check(settings: Settings, gpu_memory_gb: float | None) -> int:
    config = load_config(settings.config)
    memory = gpu_memory_gb if gpu_memory_gb is not None else GpuReader().total_memory_gb()
    memory = memory if memory is not None else config.gpu_memory_gb
    print(f"config: {config.source}")
    print(f"GPU memory: {'unknown' if memory is None else f'{memory:g} GiB'}")
    for profile in config.models:
        need = required_gb(profile)
        print(f"  {profile.id}: {profile.model} as {profile.served_name}, needs "
              f"{'unknown' if need is None else f'~{need:.1f} GiB'}")
    warnings = check_fit(config, memory)
    for warning in warnings:
        print(f"WARNING: {warning}")
    if not warnings:
        print("every profile fits")
    return 1 if warnings else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "profiles":
        print("\n".join(bundled_profiles()))
        return 0
    try:
        settings = _settings(args)
        if args.command == "check":
            return _check(settings, args.gpu_memory_gb)
        logging.basicConfig(level=settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(settings)
    except (SettingsError, ConfigError) as exc:
        print(f"local-ai-inference: {exc}", file=sys.stderr)
        return 2
    # handler_cancellation: a client that disconnects cancels its handler at once, so a request
    # waiting for a model start (or a non-streamed generation) is dropped, not sent to vLLM.
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                handle_signals=True, shutdown_timeout=settings.stop_grace + 5,
                handler_cancellation=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
