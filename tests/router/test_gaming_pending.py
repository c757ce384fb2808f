"""A gaming-mode change made while the gaming PC was unreachable is kept as pending
(gaming.py docstring, README). If re-applying it fails once more when the PC reports in, the
pending change must survive, not be overwritten by the PC's old state."""

from __future__ import annotations

import asyncio
from pathlib import Path

from router.core.gaming import GamingMode
from router.store import db
from tests.conftest import free_port


async def test_pending_change_survives_a_failed_reapply(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    await asyncio.to_thread(db.upgrade, url)
    engine = db.make_engine(url)
    try:
        gaming = GamingMode(engine, {"3090": f"http://127.0.0.1:{free_port()}"},  # nothing listens
                            timeout=1.0)
        change = await gaming.set(True, "alice", "admin")
        assert (change.applied, gaming.enabled) == (False, True)
        await gaming.observe("3090", False)  # the PC reports its old state; the POST fails again
        assert gaming.enabled is True
        assert gaming.pending("3090") is True
    finally:
        engine.dispose()
