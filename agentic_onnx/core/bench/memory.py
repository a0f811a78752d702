"""Memory of a benchmark run: peak RSS per run (Linux) and GPU memory through NVML.

Kept apart from `bench` because both are platform probes: `/proc/self/clear_refs` on Linux,
`getrusage` elsewhere, and `pynvml` (imported only when a run uses CUDA).
"""

from __future__ import annotations

import os
import sys
from typing import Any


class PeakRss:
    """Peak resident memory since construction (Linux) or of the whole process (elsewhere)."""

    def __init__(self) -> None:
        self.scope = "run" if self._reset() else "process"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM, the peak RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def peak_bytes(self) -> int | None:
        if self.scope == "run":
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak if sys.platform == "darwin" else peak * 1024
        except ImportError:  # Windows
            import psutil

            return int(getattr(psutil.Process().memory_info(), "peak_wset", 0)) or None


class GpuMemoryProbe:
    """GPU memory used by this process through NVML (the device's used memory if the driver
    hides per-process figures), sampled after loading and after each iteration."""

    def __init__(self, device_id: int = 0) -> None:
        """`device_id`: the CUDA device the model runs on (--device-id)."""
        self._peak: int | None = None
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(_visible_gpu(device_id))
        except Exception:  # noqa: BLE001 - no NVML: GPU memory is simply not reported
            self._handle = None

    def sample(self) -> None:
        if self._handle is None:
            return
        try:
            used = [p.usedGpuMemory for p in
                    self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
                    if p.pid == os.getpid() and p.usedGpuMemory]
            value = int(used[0]) if used else int(
                self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except Exception:  # noqa: BLE001
            return
        self._peak = max(self._peak or 0, value)

    def close(self) -> int | None:
        """The peak seen; releases NVML."""
        self.sample()
        if self._handle is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._handle = None
        return self._peak


def _visible_gpu(device_id: int = 0) -> int:
    """NVML's index of CUDA device `device_id`: CUDA_VISIBLE_DEVICES renumbers the GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    chosen = visible[device_id].strip() if device_id < len(visible) else ""
    return int(chosen) if chosen.isdigit() else device_id
