"""The host's models as a whole: choosing one per request, loading, switching, idling, gaming mode.

`ModelManager` owns one `ModelProcess` per configured model and is used from one asyncio loop;
all methods are safe to call concurrently within it.

- `use(profile, force_big)` is the request path: it refuses in gaming mode without force-big,
  counts the request as active, makes room on the GPU (stopping the least recently used other
  models beyond `max_loaded_models`), waits until the model is ready and yields its base URL.
- `stop_idle()` stops ready models without requests for `IDLE_SHUTDOWN_MINUTES`; the app's
  scheduler calls it.
- `set_gaming(True)` persists the flag and stops every model, freeing VRAM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from inference.config import HostConfig, ModelProfile
from inference.errors import GamingModeRefused, ModelNotFound, ModelStartFailed
from inference.gaming import GamingModeStore
from inference.gpu import GpuReader
from inference.process import ModelProcess, ModelState
from inference.settings import Settings

GAMING_REFUSAL = (
    "Gaming mode is on: this GPU is reserved for gaming and serves only requests that carry "
    "the header X-Force-Big: true."
)


class ModelManager:
    """See the module docstring for the contract."""

    def __init__(
        self,
        config: HostConfig,
        settings: Settings,
        session: aiohttp.ClientSession,
        gaming: GamingModeStore,
        gpu: GpuReader,
        warnings: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.settings = settings
        self.gaming = gaming
        self.gpu = gpu
        self.warnings = list(warnings or [])
        self._clock = clock
        log_dir = settings.state_dir / "logs"
        self.processes: dict[str, ModelProcess] = {
            p.id: ModelProcess(
                p, start_timeout=settings.start_timeout, stop_grace=settings.stop_grace,
                log_dir=log_dir, session=session, state_dir=settings.state_dir,
            )
            for p in config.models
        }
        self._active: dict[str, int] = {p.id: 0 for p in config.models}
        self._last_used: dict[str, float] = {p.id: clock() for p in config.models}
        self._switch_lock = asyncio.Lock()

    # -- lookup ------------------------------------------------------------------------------
    def resolve(self, requested: str | None) -> ModelProfile:
        """The profile serving a request for `requested`; raises `ModelNotFound`."""
        profile = self.config.resolve(requested)
        if profile is None:
            served = ", ".join(p.served_name for p in self.config.models)
            raise ModelNotFound(
                f"The model {requested!r} is not served by this host (it serves {served}).",
                param="model",
            )
        return profile

    def get(self, model_id: str) -> ModelProfile:
        """The profile with agent id (or any name of) `model_id`; raises `ModelNotFound`."""
        profile = self.config.get(model_id) or next(
            (p for p in self.config.models if model_id in p.names()), None
        )
        if profile is None:
            ids = ", ".join(p.id for p in self.config.models)
            raise ModelNotFound(f"No model {model_id!r} is configured here (configured: {ids}).")
        return profile

    def check_gaming(self, force_big: bool) -> None:
        """Raise `GamingModeRefused` when gaming mode is on and the request is not force-big."""
        if self.gaming.enabled and not force_big:
            raise GamingModeRefused(GAMING_REFUSAL)

    # -- request path ------------------------------------------------------------------------
    @asynccontextmanager
    async def use(self, profile: ModelProfile, force_big: bool) -> AsyncIterator[str]:
        """Hold `profile` ready for one request; yields the vLLM base URL.

        Blocks while the model starts. Raises `GamingModeRefused` or `ModelStartFailed`.
        """
        self.check_gaming(force_big)
        self._active[profile.id] += 1
        self._last_used[profile.id] = self._clock()
        try:
            try:
                url = await self._ready(profile)
            except ModelStartFailed:
                # Gaming mode turned on while we waited: say that, not "stopped while starting".
                self.check_gaming(force_big)
                raise
            yield url
        finally:
            self._active[profile.id] -= 1
            self._last_used[profile.id] = self._clock()

    async def _ready(self, profile: ModelProfile) -> str:
        process = self.processes[profile.id]
        if process.state is ModelState.READY:
            return process.base_url
        async with self._switch_lock:
            await self._make_room(profile)
        return await process.ensure_ready()

    async def _make_room(self, profile: ModelProfile) -> None:
        """Stop the least recently used other models so that `profile` fits the GPU."""
        others = [
            p for pid, p in self.processes.items()
            if pid != profile.id and p.state is not ModelState.STOPPED
        ]
        excess = len(others) + 1 - self.config.max_loaded_models
        if excess <= 0:
            return
        others.sort(key=lambda p: self._last_used[p.profile.id])
        await asyncio.gather(*(p.stop() for p in others[:excess]))

    # -- operator actions --------------------------------------------------------------------
    async def load(self, model_id: str, force_big: bool) -> dict[str, Any]:
        """Start `model_id` (switching out others if needed) and wait until it is ready."""
        profile = self.get(model_id)
        async with self.use(profile, force_big):
            pass
        return self.model_status(profile.id)

    async def unload(self, model_id: str) -> dict[str, Any]:
        """Stop `model_id`; returns its status once the process is gone."""
        profile = self.get(model_id)
        await self.processes[profile.id].stop()
        return self.model_status(profile.id)

    async def stop_all(self) -> None:
        """Stop every model (blocks until every process is gone)."""
        await asyncio.gather(*(p.stop() for p in self.processes.values()))

    async def set_gaming(self, enabled: bool) -> None:
        """Persist gaming mode; turning it on stops every model to free VRAM."""
        self.gaming.set(enabled)
        if enabled:
            await self.stop_all()

    async def stop_idle(self) -> list[str]:
        """Stop ready models idle for `IDLE_SHUTDOWN_MINUTES`; returns the ids stopped."""
        limit = self.settings.idle_shutdown_seconds
        if limit <= 0:
            return []
        now = self._clock()
        idle = [
            p for pid, p in self.processes.items()
            if p.state is ModelState.READY and self._active[pid] == 0
            and now - self._last_used[pid] >= limit
        ]
        await asyncio.gather(*(p.stop() for p in idle))
        return [p.profile.id for p in idle]

    # -- views -------------------------------------------------------------------------------
    def model_status(self, model_id: str) -> dict[str, Any]:
        process = self.processes[model_id]
        view = process.snapshot()
        active = self._active[model_id]
        view["active_requests"] = active
        view["idle_seconds"] = (
            round(self._clock() - self._last_used[model_id], 1)
            if process.state is ModelState.READY and active == 0 else None
        )
        return view

    def status(self) -> dict[str, Any]:
        """The JSON body of `GET /status`."""
        return {
            "gaming_mode": self.gaming.enabled,
            "gaming_mode_changed_at": self.gaming.changed_at,
            "models": [self.model_status(pid) for pid in self.processes],
            "active_requests": sum(self._active.values()),
            "idle_shutdown_minutes": self.settings.idle_shutdown_minutes,
            "max_loaded_models": self.config.max_loaded_models,
            "default_model": self.config.default_model,
            "gpu": self.gpu.read(),
            "warnings": self.warnings,
        }
