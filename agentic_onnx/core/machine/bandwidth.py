"""This machine's memory read bandwidth, measured once and cached with the CPU facts.

The probe reads a 256 MiB buffer (far larger than any last-level cache) with one thread per
core the engine uses, a few times, and keeps the best rate: well under a second. The result is
kept in `$AGENTIC_FLOW_HOME/hardware.json` with the CPU model name, core counts, brand and SIMD
flags, so later commands skip both the probe and py-cpuinfo (about 1.5 s); a changed CPU
re-probes, and `onnx info --refresh` always does. numpy is imported inside the probe only.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from agentic_onnx.core.paths import home_dir

if TYPE_CHECKING:
    from agentic_onnx.core.machine.hardware import CpuInfo

CACHE_FILE = "hardware.json"
CACHE_SCHEMA = 1
PROBE_BYTES = 256 * 2**20
PROBE_REPEATS = 5
PROBE_BUDGET_S = 0.5  # stop repeating once the timed passes took this long


@dataclass(frozen=True)
class CpuSpeedCache:
    """What hardware.json holds; valid while `fingerprint` matches this machine."""

    fingerprint: dict[str, object]
    brand: str
    simd: tuple[str, ...]
    threads: int
    read_bandwidth_gbps: float | None  # None: the probe could not run (no numpy)
    measured_at: str
    probe_s: float
    cached: bool = False  # True: read from the file, not measured by this process

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["simd"] = list(self.simd)
        return data


def measure_read_bandwidth(threads: int, nbytes: int = PROBE_BYTES,
                           repeats: int = PROBE_REPEATS) -> float | None:
    """Best read rate over a few passes, GB/s; `threads` threads each reduce one slice (numpy
    releases the GIL inside reductions). None when numpy (a dependency of onnxruntime) is
    missing or the buffer cannot be allocated."""
    try:
        import numpy as np
    except ImportError:
        return None
    from concurrent.futures import ThreadPoolExecutor

    try:
        buffer = np.ones(nbytes // 4, dtype=np.float32)  # writing it also faults the pages in
    except MemoryError:
        return None
    slices = np.array_split(buffer, max(1, threads))
    best = float("inf")
    with ThreadPoolExecutor(max_workers=len(slices)) as pool:
        list(pool.map(np.max, slices))  # warm up the threads
        spent = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(np.max, slices))
            elapsed = time.perf_counter() - start
            best, spent = min(best, elapsed), spent + elapsed
            if spent > PROBE_BUDGET_S:
                break
    return buffer.nbytes / best / 1e9


def cpu_fingerprint() -> dict[str, object]:
    """Cheap facts that change when the machine does (no py-cpuinfo: it takes ~1.5 s)."""
    from agentic_onnx.core.machine.hardware import usable_cores

    return {"arch": platform.machine(), "model": _cpu_model_name(),
            "logical_cores": os.cpu_count(), "usable_cores": usable_cores()}


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cache_path() -> Path:
    return home_dir() / CACHE_FILE


def read_cache() -> CpuSpeedCache | None:
    """The cached facts if they were measured on this machine; None otherwise."""
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        if data.get("schema") != CACHE_SCHEMA or data["fingerprint"] != cpu_fingerprint():
            return None
        bandwidth = data["read_bandwidth_gbps"]
        return CpuSpeedCache(data["fingerprint"], str(data["brand"]), tuple(data["simd"]),
                             int(data["threads"]),
                             None if bandwidth is None else float(bandwidth),
                             str(data["measured_at"]), float(data["probe_s"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, unreadable or from another version: measure again


def cpu_speed_facts(refresh: bool = False,
                    probe: Callable[[int], float | None] | None = None,
                    cpu: CpuInfo | None = None) -> CpuSpeedCache:
    """The cached CPU facts and read bandwidth; measured (and cached) when missing, stale or
    `refresh` is set. `probe` replaces the measurement in tests; `cpu` saves probing the CPU
    again when the caller already did."""
    cached = None if refresh else read_cache()
    if cached is not None:
        return cached
    from agentic_onnx.core.machine.hardware import default_threads, probe_cpu

    cpu, threads = cpu or probe_cpu(), default_threads()
    start = time.perf_counter()
    bandwidth = (probe or measure_read_bandwidth)(threads)
    facts = CpuSpeedCache(cpu_fingerprint(), cpu.brand, tuple(cpu.simd), threads,
                          None if bandwidth is None else round(bandwidth, 2),
                          datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          round(time.perf_counter() - start, 3))
    _write_cache(facts)
    return facts


def _write_cache(facts: CpuSpeedCache) -> None:
    """Atomically; a read-only home only costs a probe next time."""
    from agentic_onnx.core.models.store import write_json_atomic

    data = {"schema": CACHE_SCHEMA, **facts.to_json()}
    data.pop("cached")
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_path(), data)
    except OSError:
        pass
