#!/usr/bin/env bash
# Build (or reuse) the CPU vLLM venv used by the e2e tier, at
# ${LOCAL_AI_CACHE:-~/.cache/local-ai-router}/vllm-venv. Safe to run concurrently with the tests:
# an flock serialises builders. Takes ~2-3 minutes on a fresh machine, instant when cached.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/tests/e2e/vllm_env.py"
