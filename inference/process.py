"""One vLLM process per model, driven through an explicit state machine.

    stopped --start()--> starting --/health ok--> ready --stop()--> stopping --> stopped
                            |  exits early / deadline / stop()          ^
                            +-------------------------------------------+
                         ready --process exits by itself--> stopped (crash recorded)
                         ready --sleep()--> sleeping --ensure_ready()--> starting (wake) --> ready
                                              wake fails: the process is killed, cold start

`ModelProcess` is used from one asyncio loop; every method is safe to call concurrently within
it, and one lock serialises the transitions (start, wake, sleep, stop). `ensure_ready()` starts
vLLM when it is stopped (or wakes it when it sleeps) and blocks until it serves; concurrent
callers share the one start (one process, never a second copy) and all see the same
`ModelStartFailed` when it fails. With `idle_action = "sleep"` vLLM is launched with
`--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`; an engine that has no sleep mode (404 on
`/sleep`, or a start refused because of the flag) is remembered in `sleep_supported`/`sleep_note`
and launched without the flag from then on. Stopping sends SIGTERM to the process group, waits
`stop_grace` seconds, then SIGKILLs the group. Children run in a new session (their own process
group) with PR_SET_PDEATHSIG=SIGKILL, so they die with the agent even when it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from inference import sleepmode
from inference.config import ModelProfile
from inference.errors import ModelStartFailed
from inference.oslaunch import die_with_parent, free_port, signal_group
from inference.reaper import forget_session, record_session, session_members

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 16384
HEALTH_POLL_SECONDS = 0.25
# How a vLLM build without sleep mode refuses --enable-sleep-mode at start
# ("Sleep mode is not supported on current platform."); narrow, because vLLM also echoes its
# arguments, enable_sleep_mode included, at every start.
_SLEEP_REFUSAL = re.compile(r"sleep[ _-]?mode (is )?not (supported|available)", re.IGNORECASE)


class ModelState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"  # a cold start, or a wake from sleep (see `ModelProcess.start_kind`)
    READY = "ready"
    SLEEPING = "sleeping"  # vLLM sleep mode: process alive, weights offloaded
    STOPPING = "stopping"


class ModelProcess:
    """Owns the vLLM process of one model profile; see the module docstring for the contract."""

    def __init__(
        self,
        profile: ModelProfile,
        *,
        start_timeout: float,
        stop_grace: float,
        log_dir: Path,
        session: aiohttp.ClientSession,
        state_dir: Path | None = None,
    ) -> None:
        self.profile = profile
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.log_path = log_dir / f"{profile.id}.log"
        self._state_dir = state_dir
        self._session = session
        self.state = ModelState.STOPPED
        self.port: int | None = None
        self.last_error: str | None = None
        self.exit_code: int | None = None
        self.started_at: float | None = None  # epoch seconds of the start in progress
        self.start_kind: str | None = None  # "cold" or "wake" while starting
        self.last_start_seconds: float | None = None
        self.last_start_kind: str | None = None
        # None until known: True once a sleep worked, False once the engine showed it has none.
        self.sleep_supported: bool | None = None
        self.sleep_note: str | None = None
        self._start_mono: float | None = None
        self._log_offset = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # serialises transitions: start, wake, sleep, stop
        self._stopping_on_purpose = False

    # -- read-only views -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def uses_sleep_mode(self) -> bool:
        """Whether idle means sleep for this model (configured, and not known to be missing)."""
        return self.profile.idle_action == "sleep" and self.sleep_supported is not False

    @property
    def occupies_gpu(self) -> bool:
        """Whether the model holds (or is about to hold) the GPU: any state but stopped, or a
        start already scheduled."""
        return self.state is not ModelState.STOPPED or self._start_pending()

    def _start_pending(self) -> bool:
        return self._start_task is not None and not self._start_task.done()

    def starting_seconds(self) -> float | None:
        """Seconds since the start (cold or wake) in progress began, or None."""
        if self.state is not ModelState.STARTING or self._start_mono is None:
            return None
        return time.monotonic() - self._start_mono

    def session_pids(self) -> list[int]:
        """Pids of every live process in the model's session (vLLM and its engine children)."""
        pid = self.pid
        return session_members(pid) if pid is not None else []

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last `lines` lines vLLM wrote during its current (or last) run."""
        try:
            with self.log_path.open("rb") as source:
                size = source.seek(0, os.SEEK_END)
                start = max(self._log_offset, size - LOG_TAIL_BYTES)
                source.seek(start)
                data = source.read()
        except OSError:
            return []
        text = data.decode(errors="replace").splitlines()
        return text[-lines:]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for `/status` (fields documented in docs/agent.md)."""
        starting = self.starting_seconds()
        return {
            "id": self.profile.id,
            "served_name": self.profile.served_name,
            "model": self.profile.model,
            "state": str(self.state),
            "port": self.port,
            "pid": self.pid,
            "max_model_len": self.profile.max_model_len,
            "started_at": self.started_at if self.state is ModelState.STARTING else None,
            "start_kind": self.start_kind if self.state is ModelState.STARTING else None,
            "starting_seconds": None if starting is None else round(starting, 1),
            "start_timeout": self.start_timeout,
            "last_start_seconds": self.last_start_seconds,
            "last_start_kind": self.last_start_kind,
            "keep_warm": self.profile.keep_warm,
            "idle_action": self.profile.idle_action,
            "idle_action_effective": "sleep" if self.uses_sleep_mode else "stop",
            "sleep_note": self.sleep_note,
            "last_error": self.last_error,
            "exit_code": self.exit_code,
            "log_tail": self.log_tail() if self.last_error else [],
        }

    # -- transitions -----------------------------------------------------------------------
    async def ensure_ready(self) -> str:
        """Start or wake vLLM if needed and wait until it serves; returns its base URL.

        Blocks up to `start_timeout` (plus a pending transition). Raises `ModelStartFailed` when
        the process exits early, misses the deadline, or is stopped while starting. Cancelling
        the caller leaves the shared start running for the other waiters.
        """
        while True:
            if self.state is ModelState.READY and not self._start_pending():
                return self.base_url
            task = self.start_soon()
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled() and not _current_task_cancelling():
                    raise ModelStartFailed(
                        f"Model {self.profile.id!r} was stopped while it was starting."
                    ) from None
                raise
            # Loop: the start succeeded (READY on the next pass) or a stop raced it.

    def start_soon(self) -> asyncio.Task[None]:
        """Schedule the start (or wake) without waiting, or return the one already scheduled.

        Never blocks; `ensure_ready()` joins it. Used so a caller can claim the GPU for this
        model inside its own lock and wait outside it.
        """
        task = self._start_task
        # A task cancelled before it ran never reset the slot: treat it as gone.
        if task is None or task.done():
            task = self._start_task = asyncio.create_task(
                self._bring_up(), name=f"start-{self.profile.id}"
            )
            # The failure is logged and kept in last_error; mark it seen even when every waiter
            # has left, so asyncio does not print "Task exception was never retrieved".
            task.add_done_callback(_retrieve)
        return task

    async def _bring_up(self) -> None:
        try:
            async with self._lock:
                await self._bring_up_locked()
        finally:
            if self._start_task is asyncio.current_task():
                self._start_task = None

    async def _bring_up_locked(self) -> None:
        if self.state is ModelState.READY:
            return
        try:
            if self.state is ModelState.SLEEPING and await self._wake():
                return
            try:
                await self._launch_and_wait()
            except ModelStartFailed:
                if not self._sleep_flag_rejected():
                    raise
                await self._terminate()
                await self._launch_and_wait()
        except asyncio.CancelledError:
            await self._terminate()
            self._set_state(ModelState.STOPPED)
            raise
        except ModelStartFailed as exc:
            self.last_error = exc.message
            log.error("%s", exc.message)
            await self._terminate()
            self._set_state(ModelState.STOPPED)
            raise

    def _sleep_flag_rejected(self) -> bool:
        """After a failed launch: did vLLM refuse `--enable-sleep-mode` (a CPU build)? If so,
        remember that sleep is unsupported, so the retry launches without the flag."""
        if not self.uses_sleep_mode or self.exit_code is None:
            return False
        if not any(_SLEEP_REFUSAL.search(line) for line in self.log_tail()):
            return False
        self._mark_sleep_unsupported("vLLM refused --enable-sleep-mode at start")
        return True

    def _mark_sleep_unsupported(self, why: str) -> None:
        self.sleep_supported = False
        self.sleep_note = (
            f"idle_action is \"sleep\" but this engine has no sleep mode ({why}); "
            "the model is stopped when idle instead."
        )
        log.warning("model %s: %s", self.profile.id, self.sleep_note)

    def _set_state(self, state: ModelState) -> None:
        self.state = state
        if state is not ModelState.STARTING:
            self.started_at = None
            self.start_kind = None
            self._start_mono = None

    def _begin_start(self, kind: str) -> None:
        self._set_state(ModelState.STARTING)
        self.start_kind = kind
        self.started_at = time.time()
        self._start_mono = time.monotonic()

    def _finish_start(self) -> None:
        elapsed = time.monotonic() - (self._start_mono or time.monotonic())
        self.last_start_seconds = round(elapsed, 2)
        self.last_start_kind = self.start_kind
        log.info("model %s ready on port %s after %.1fs (%s start)", self.profile.id, self.port,
                 elapsed, self.start_kind)
        self._set_state(ModelState.READY)

    async def _launch_and_wait(self) -> None:
        self._begin_start("cold")
        self.last_error = None
        self.exit_code = None
        self.port = self.profile.port or free_port()
        argv = self.profile.argv(self.port)
        env = {**os.environ, **self.profile.launch_env(self.port)}
        if self.uses_sleep_mode:
            argv.append("--enable-sleep-mode")
            env["VLLM_SERVER_DEV_MODE"] = "1"  # vLLM serves /sleep and /wake_up only then
        log.info("starting model %s: %s", self.profile.id, " ".join(argv))
        self._stopping_on_purpose = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # vLLM writes straight to a file, not a pipe: asyncio's wait() would otherwise hang
        # until vLLM's children close the pipe, and nothing has to drain it.
        with self.log_path.open("ab") as sink:
            self._log_offset = sink.tell()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=sink,
                    stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            except OSError as exc:
                raise ModelStartFailed(
                    f"Model {self.profile.id!r} could not be started: "
                    f"{argv[0]}: {exc.strerror or exc}."
                ) from None
        if self._state_dir is not None:
            record_session(self._state_dir, self.profile.id, self._proc.pid)
        await self._wait_healthy(self._proc)
        self._finish_start()
        self._watch_task = asyncio.create_task(self._watch(self._proc),
                                               name=f"watch-{self.profile.id}")

    async def _wake(self) -> bool:
        """Wake a sleeping vLLM (lock held); False when that failed and the process is gone."""
        proc = self._proc
        self._begin_start("wake")
        try:
            await sleepmode.wake_up(self._session, self.base_url, self.start_timeout,
                                    exited=lambda: proc is None or proc.returncode is not None)
        except sleepmode.SleepFailed as exc:
            log.warning("model %s could not be woken (%s); starting it afresh", self.profile.id,
                        exc)
            await self._terminate()
            return False
        self._finish_start()
        return True

    async def sleep(self) -> bool:
        """Put a ready, idle model to sleep (vLLM level-1 sleep); True when it sleeps.

        False when the model is not ready or busy with a transition, or the engine failed to
        sleep; an engine without sleep mode is remembered (`sleep_supported = False`, with a
        note) so the caller stops it instead. The state is `sleeping` from the first moment,
        so a request arriving meanwhile waits for the sleep and then wakes the model.
        """
        if self.state is not ModelState.READY or self._start_pending():
            return False
        if self._lock.locked():
            return False
        async with self._lock:
            self._set_state(ModelState.SLEEPING)
            try:
                await sleepmode.put_to_sleep(self._session, self.base_url)
            except sleepmode.SleepUnsupported as exc:
                self._mark_sleep_unsupported(str(exc).rstrip("."))
                self._set_state(ModelState.READY)
                return False
            except sleepmode.SleepFailed as exc:
                log.warning("model %s did not go to sleep: %s", self.profile.id, exc)
                self._set_state(ModelState.READY)
                return False
            self.sleep_supported = True
            log.info("model %s is asleep", self.profile.id)
            return True

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.start_timeout
        exited = asyncio.create_task(proc.wait())
        try:
            while True:
                if exited.done():
                    self.exit_code = proc.returncode
                    raise ModelStartFailed(
                        f"Model {self.profile.id!r} exited with code {proc.returncode} before "
                        f"it became ready. Last log lines: {self._tail_text()}"
                    )
                if await self._healthy():
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelStartFailed(
                        f"Model {self.profile.id!r} did not become healthy within "
                        f"{self.start_timeout:g} seconds. Last log lines: {self._tail_text()}"
                    )
                await asyncio.wait({exited}, timeout=min(HEALTH_POLL_SECONDS, remaining))
        finally:
            if not exited.done():
                exited.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exited

    async def _healthy(self) -> bool:
        try:
            async with self._session.get(
                f"{self.base_url}/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Record a crash of a ready or sleeping process (not one we are stopping)."""
        code = await proc.wait()
        if self._stopping_on_purpose or proc is not self._proc:
            return
        self.exit_code = code
        self.last_error = (
            f"Model {self.profile.id!r} exited unexpectedly with code {code}. "
            f"Last log lines: {self._tail_text()}"
        )
        log.error("%s", self.last_error)
        async with self._lock:
            if self._proc is proc:
                await self._terminate()  # the group may still hold vLLM's children
                self._set_state(ModelState.STOPPED)

    async def stop(self) -> None:
        """Stop the model (cancelling a start in flight); returns when the process is gone."""
        task = self._start_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ModelStartFailed):
                await task
            if self._start_task is task:
                self._start_task = None
        async with self._lock:
            if self.state is ModelState.STOPPED and self._proc is None:
                return
            self._set_state(ModelState.STOPPING)
            await self._terminate()
            self._set_state(ModelState.STOPPED)

    async def _terminate(self) -> None:
        """SIGTERM the process group, SIGKILL it after `stop_grace`; reap the leader."""
        proc, self._proc = self._proc, None
        self._stopping_on_purpose = True
        if proc is None:
            return
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.stop_grace)
            except TimeoutError:
                log.warning("model %s ignored SIGTERM for %gs; killing it", self.profile.id,
                            self.stop_grace)
        # Kill whatever is left in the group, leader or vLLM's own children.
        signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        if self._state_dir is not None:
            forget_session(self._state_dir, self.profile.id)
        if self._watch_task is not None and self._watch_task is not asyncio.current_task():
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        self._watch_task = None

    def _tail_text(self, lines: int = 10) -> str:
        tail = self.log_tail(lines)
        return " | ".join(tail) if tail else "(no output)"


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task and task.cancelling())
