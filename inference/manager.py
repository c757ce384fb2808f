"""The host's models as a whole: choosing one per request, loading, switching, idling, gaming mode.

`ModelManager` owns one `ModelProcess` per configured model and is used from one asyncio loop;
all methods are safe to call concurrently within it.

- `hold(profile, force_big)` + `ready(profile, force_big)` are the request path: `hold` refuses
  in gaming mode without force-big and counts the request as active (without waiting); `ready`
  makes room on the GPU (stopping the least recently used other models beyond
  `max_loaded_models`), starts or wakes the model and blocks until it serves. `use()` is both.
- `tick()` is the scheduler's periodic job: `stop_idle()` puts models idle for
  `IDLE_SHUTDOWN_MINUTES` to sleep (`idle_action = "sleep"`, where the engine supports it) or
  stops them; keep-warm models are never stopped for idleness. It also re-starts keep-warm
  models that were switched out, when the GPU has room again and their last start did not fail.
- `warm_up()` (at agent start and when gaming mode ends) starts the keep-warm models, in the
  background via `spawn()`; `close()` cancels background work.
- `set_gaming(True)` persists the flag and stops every model (sleeping ones too: a sleeping vLLM
  still holds a CUDA context), freeing VRAM; `set_gaming(False)` warms the keep-warm models.
- `safe_to_game()` is True when no model process is alive and NVML lists no process of a model
  holding GPU memory, None without NVML.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from inference.config import HostConfig, ModelProfile
from inference.errors import GamingModeRefused, ModelNotFound, ModelStartFailed
from inference.gaming import GamingModeStore
from inference.gpu import GpuReader
from inference.process import ModelProcess, ModelState
from inference.settings import Settings

log = logging.getLogger(__name__)

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
        self._tasks: set[asyncio.Task[Any]] = set()

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
    async def hold(self, profile: ModelProfile, force_big: bool) -> AsyncIterator[None]:
        """Count one request as active on `profile` for the block; does not wait.

        Raises `GamingModeRefused` at entry when gaming mode is on and `force_big` is false.
        """
        self.check_gaming(force_big)
        self._active[profile.id] += 1
        self._last_used[profile.id] = self._clock()
        try:
            yield
        finally:
            self._active[profile.id] -= 1
            self._last_used[profile.id] = self._clock()

    async def ready(self, profile: ModelProfile, force_big: bool) -> str:
        """Make `profile` serve (start or wake it) and return its base URL; call inside `hold`.

        Blocks while the model starts. Raises `GamingModeRefused` or `ModelStartFailed`.
        Cancelling the caller does not cancel the start other requests may share.
        """
        try:
            return await self._ready(profile)
        except ModelStartFailed:
            # Gaming mode turned on while we waited: say that, not "stopped while starting".
            self.check_gaming(force_big)
            raise

    @asynccontextmanager
    async def use(self, profile: ModelProfile, force_big: bool) -> AsyncIterator[str]:
        """`hold` and `ready` together: hold `profile` ready for one request; yields its URL."""
        async with self.hold(profile, force_big):
            yield await self.ready(profile, force_big)

    async def _ready(self, profile: ModelProfile) -> str:
        process = self.processes[profile.id]
        if process.state is ModelState.READY:
            return process.base_url
        async with self._switch_lock:
            await self._make_room(profile)
            process.start_soon()  # claims the GPU before the lock lets a warm-up count models
        return await process.ensure_ready()

    async def _make_room(self, profile: ModelProfile) -> None:
        """Stop the least recently used other models so that `profile` fits the GPU."""
        others = [
            p for pid, p in self.processes.items() if pid != profile.id and p.occupies_gpu
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
        """Persist gaming mode; on: stop every model (frees VRAM); off: warm the keep-warm ones."""
        self.gaming.set(enabled)
        if enabled:
            await self.stop_all()
        else:
            self.spawn(self.warm_up(), "warm-up")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background; the manager keeps the task and logs its failure."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %s", task.get_name(), task.exception())

    async def close(self) -> None:
        """Cancel background work (warm-ups); models are stopped separately by `stop_all`."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def warm_up(self, only_unfailed: bool = False) -> list[str]:
        """Start the stopped keep-warm models that fit (never evicting); returns the ids started.

        Does nothing in gaming mode. A start that fails is logged and shows in `/status`;
        with `only_unfailed`, models whose last run ended in an error are left alone.
        """
        started: list[str] = []
        for pid, process in self.processes.items():
            if not process.profile.keep_warm or self.gaming.enabled:
                continue
            if process.state is not ModelState.STOPPED:
                continue
            if only_unfailed and process.last_error is not None:
                continue
            async with self._switch_lock:  # a request's switch must not interleave with this
                if process.occupies_gpu:
                    continue
                loaded = sum(p.occupies_gpu for p in self.processes.values())
                if loaded >= self.config.max_loaded_models:
                    break
                log.info("keeping model %s warm: starting it", pid)
                process.start_soon()
            try:
                await process.ensure_ready()
            except ModelStartFailed as exc:
                log.error("keep-warm start of %s failed: %s", pid, exc.message)
                continue
            self._last_used[pid] = self._clock()
            started.append(pid)
        return started

    async def tick(self) -> None:
        """The periodic job: idle actions, then re-warm switched-out keep-warm models in the
        background (a start takes minutes; the next idle check must not wait for it)."""
        await self.stop_idle()
        cold = any(p.profile.keep_warm and not p.occupies_gpu for p in self.processes.values())
        if cold and not self.gaming.enabled and not any(
                t.get_name() == "re-warm" for t in self._tasks):
            self.spawn(self.warm_up(only_unfailed=True), "re-warm")

    async def stop_idle(self) -> list[str]:
        """Sleep or stop ready models idle for `IDLE_SHUTDOWN_MINUTES`; returns the ids acted on.

        Keep-warm models are only ever put to sleep, never stopped, for idleness.
        """
        limit = self.settings.idle_shutdown_seconds
        if limit <= 0:
            return []
        idle = [pid for pid, p in self.processes.items()
                if p.state is ModelState.READY and self._is_idle(pid, limit)]
        done = await asyncio.gather(*(self._idle_action(pid, limit) for pid in idle))
        return [pid for pid, acted in zip(idle, done, strict=True) if acted]

    def _is_idle(self, pid: str, limit: float) -> bool:
        return self._active[pid] == 0 and self._clock() - self._last_used[pid] >= limit

    async def _idle_action(self, pid: str, limit: float) -> bool:
        process = self.processes[pid]
        # Re-checked here, after gather() scheduled us: a request may have arrived meanwhile.
        if process.state is not ModelState.READY or not self._is_idle(pid, limit):
            return False
        if process.uses_sleep_mode:
            if await process.sleep():
                return True
            if not self._is_idle(pid, limit) or process.state is not ModelState.READY:
                return False
        if process.profile.keep_warm:
            return False
        await process.stop()
        return True

    def gpu_processes(self) -> list[dict[str, Any]] | None:
        """NVML's processes on the GPU, `{"pid", "used_mb", "model"}` (`model` is the agent's
        id when the pid is in a model's session, else None); None without NVML."""
        usage = self.gpu.process_memory()
        if usage is None:
            return None
        owner = {pid: p.profile.id for p in self.processes.values() for pid in p.session_pids()}
        return [{"pid": pid, "used_mb": used, "model": owner.get(pid)}
                for pid, used in sorted(usage.items())]

    def safe_to_game(self, gpu_processes: list[dict[str, Any]] | None) -> bool | None:
        """Whether no model process holds GPU memory; None without NVML.

        False when NVML attributes memory to a model's process, and also whenever a model
        process is alive at all: a starting vLLM is about to take memory, a sleeping one keeps
        its CUDA context, and in a container NVML may report host pids we cannot match.
        """
        if gpu_processes is None:
            return None
        if any(p.pid is not None for p in self.processes.values()):
            return False
        return not any(entry["model"] is not None for entry in gpu_processes)

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
        gpu_processes = self.gpu_processes()
        return {
            "gaming_mode": self.gaming.enabled,
            "gaming_mode_changed_at": self.gaming.changed_at,
            "models": [self.model_status(pid) for pid in self.processes],
            "safe_to_game": self.safe_to_game(gpu_processes),
            "active_requests": sum(self._active.values()),
            "idle_shutdown_minutes": self.settings.idle_shutdown_minutes,
            "stream_keepalive_seconds": self.settings.stream_keepalive,
            "max_loaded_models": self.config.max_loaded_models,
            "default_model": self.config.default_model,
            "gpu": self.gpu.read(),
            "gpu_processes": gpu_processes,
            "warnings": self.warnings,
        }
