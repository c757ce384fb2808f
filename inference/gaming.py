"""Gaming mode, persisted so that it survives a restart of the agent.

`GamingModeStore` keeps one JSON file (`<state_dir>/gaming_mode.json`,
`{"enabled": bool, "changed_at": iso8601}`). Reads happen once at construction; `set()` writes the
file atomically (temp file + rename) before changing the in-memory value, so a crash never leaves
a half-written file. The writes are tiny and rare (operator actions), so they run inline.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

FORCE_BIG_VALUES = {"true", "1", "yes"}


def is_force_big(header_value: str | None) -> bool:
    """Whether an `X-Force-Big` header value asks for the big model (`true`, `1` or `yes`)."""
    return (header_value or "").strip().lower() in FORCE_BIG_VALUES


class GamingModeStore:
    """The persisted gaming-mode flag; not thread-safe, use from one asyncio loop."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "gaming_mode.json"
        self.enabled = False
        self.changed_at: str | None = None
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable gaming-mode file %s: %s", self.path, exc)
            return
        if isinstance(data, dict) and isinstance(data.get("enabled"), bool):
            self.enabled = data["enabled"]
            changed = data.get("changed_at")
            self.changed_at = changed if isinstance(changed, str) else None
        else:
            log.warning("ignoring malformed gaming-mode file %s", self.path)

    def set(self, enabled: bool) -> None:
        """Persist then apply `enabled`. Raises OSError when the state dir is not writable."""
        changed_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"enabled": enabled, "changed_at": changed_at}) + "\n")
        os.replace(tmp, self.path)
        self.enabled = enabled
        self.changed_at = changed_at
