"""GPU facts from NVML, when there is a GPU; None everywhere else.

`pynvml` (the `nvidia-ml-py` package, the `gpu` extra) is imported lazily and every NVML failure
(no library, no driver, no device) yields None, so the agent runs the same on a laptop. Calls are
fast local library calls and do not block meaningfully.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class GpuReader:
    """Reads the name, memory and utilisation of GPU `index`; `read()` returns None without one."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._nvml: Any = None
        self._initialised = False

    def _init(self) -> Any:
        if self._initialised:
            return self._nvml
        self._initialised = True
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - any NVML failure means "no GPU here"
            log.info("no NVIDIA GPU information available: %s", exc)
            self._nvml = None
        return self._nvml

    def read(self) -> dict[str, Any] | None:
        """`{"name", "memory_total_mb", "memory_used_mb", "memory_free_mb",
        "utilization_percent"}` or None."""
        nvml = self._init()
        if nvml is None:
            return None
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
        except Exception as exc:  # noqa: BLE001 - NVMLError subclasses vary by version
            log.warning("NVML query failed: %s", exc)
            return None
        mib = 1024 * 1024
        return {
            "index": self.index,
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_total_mb": memory.total // mib,
            "memory_used_mb": memory.used // mib,
            "memory_free_mb": memory.free // mib,
            "utilization_percent": util.gpu,
        }

    def process_memory(self) -> dict[int, int] | None:
        """`{pid: used MiB}` of every process holding memory on the GPU (compute and graphics
        contexts), or None without NVML. A pid NVML cannot attribute (another container's pid
        namespace) is still listed, with 0 MiB when the driver hides the amount."""
        nvml = self._init()
        if nvml is None:
            return None
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            found = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            found += list(nvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
        except Exception as exc:  # noqa: BLE001 - NVMLError subclasses vary by version
            log.warning("NVML process query failed: %s", exc)
            return None
        mib = 1024 * 1024
        usage: dict[int, int] = {}
        for item in found:
            used = item.usedGpuMemory if isinstance(item.usedGpuMemory, int) else 0
            usage[int(item.pid)] = usage.get(int(item.pid), 0) + used // mib
        return usage

    def total_memory_gb(self) -> float | None:
        """The card's memory in GiB, or None without a GPU."""
        info = self.read()
        return None if info is None else info["memory_total_mb"] / 1024

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed", exc_info=True)
            self._nvml = None
