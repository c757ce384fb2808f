#!/usr/bin/env bash
# Install (or reuse) the real coding agents the client tier drives (tests/clients/): Claude Code,
# Codex CLI and Continue's CLI (`cn`) from npm, opencode from npm (the e2e tier's install), aider
# from PyPI in its own venv, all pinned, under ${LOCAL_AI_CACHE:-~/.cache/local-ai-router}. Safe
# to run concurrently with the tests (an flock serialises installers). ~1-2 minutes on a fresh
# machine (npm's ~700 MB of native binaries, aider's venv), about a second when cached. Needs
# node/npm and python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
cd "$here"
exec "$python" -m tests.clients.clients_env
