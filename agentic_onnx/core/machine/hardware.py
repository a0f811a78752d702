"""Probe the machine: CPU, memory, NVIDIA GPUs, usable execution providers, packages.

Every probe degrades to "unknown" rather than failing: `onnx info` must work on any machine.
Heavy modules (`pynvml`, `cpuinfo`, `onnxruntime_genai`) are imported inside the probes.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata

SIMD_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "sve", "dotprod",
)
# py-cpuinfo spells a few flags differently from /proc/cpuinfo; map them to one name.
_FLAG_ALIASES = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "asimd": "neon",
                 "avx512bf16": "avx512_bf16", "asimddp": "dotprod"}

PACKAGES = (
    "agentic-onnx", "onnxruntime-genai", "onnxruntime-genai-cuda", "onnxruntime-genai-directml",
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "huggingface_hub", "typer", "rich",
    "nvidia-ml-py", "psutil",
)


@dataclass
class CpuInfo:
    brand: str
    arch: str
    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int
    simd: list[str]


@dataclass
class MemoryInfo:
    total_bytes: int | None
    available_bytes: int | None


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    driver_version: str
    cuda_version: str | None
    memory_bandwidth_bytes_per_s: int | None = None  # from NVML; None: it did not say


@dataclass
class HardwareReport:
    cpu: CpuInfo
    memory: MemoryInfo
    gpus: list[GpuInfo]
    gpu_probe_error: str | None
    platform: dict[str, str]
    packages: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def usable_cores() -> int:
    """CPUs this process may run on (affinity and cgroup-limited containers count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_threads() -> int:
    """Intra-op threads for the CPU EP: physical cores, but never more than we may use.

    genai's own default behaves like one thread on small machines; matching physical cores
    nearly doubles the decode rate there (docs/performance.md).
    """
    import psutil

    physical = psutil.cpu_count(logical=False) or usable_cores()
    return max(1, min(physical, usable_cores()))


def probe_cpu() -> CpuInfo:
    import psutil

    brand, flags = _cpu_brand_and_flags()
    return CpuInfo(
        brand=brand,
        arch=platform.machine(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        usable_cores=usable_cores(),
        simd=[flag for flag in SIMD_FLAGS if flag in flags],
    )


def _cpu_brand_and_flags() -> tuple[str, set[str]]:
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception:  # noqa: BLE001 - a probe never fails the command
        return platform.processor() or "unknown", set()
    flags = {_FLAG_ALIASES.get(flag, flag) for flag in info.get("flags", [])}
    return str(info.get("brand_raw") or platform.processor() or "unknown"), flags


def probe_memory() -> MemoryInfo:
    try:
        import psutil

        memory = psutil.virtual_memory()
        return MemoryInfo(total_bytes=memory.total, available_bytes=memory.available)
    except Exception:  # noqa: BLE001
        return MemoryInfo(total_bytes=None, available_bytes=None)


def probe_gpus() -> tuple[list[GpuInfo], str | None]:
    """NVIDIA GPUs through NVML. No driver or no library: an empty list and the reason."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"no NVIDIA driver ({error})"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = _cuda_version(pynvml)
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(index, _text(pynvml.nvmlDeviceGetName(handle)),
                                int(memory.total), int(memory.free), driver, cuda,
                                _memory_bandwidth(pynvml, handle)))
        return gpus, None
    except Exception as error:  # noqa: BLE001
        return [], f"NVML query failed ({error})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def cuda_device_ids() -> list[int]:
    """The CUDA device ids of this machine's NVIDIA GPUs (`serve --device-id all`): 0..n-1 for
    the n GPUs NVML sees, or for those CUDA_VISIBLE_DEVICES leaves visible (CUDA renumbers them
    from 0). None visible, no driver: an empty list."""
    gpus, _ = probe_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len(gpus)
    if visible is not None:
        count = min(count, len([entry for entry in visible.split(",") if entry.strip()]))
    return list(range(count))


def _memory_bandwidth(pynvml, handle) -> int | None:  # noqa: ANN001
    """Peak memory bandwidth: bus width (bits) / 8 x max memory clock x 2 transfers per clock
    (NVML's memory clock is half the data rate for GDDR and HBM alike; an RTX 4090 gives
    384 bits and 10501 MHz -> 1008 GB/s, its datasheet figure)."""
    try:
        bus_bits = int(pynvml.nvmlDeviceGetMemoryBusWidth(handle))
        clock_mhz = int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))
    except Exception:  # noqa: BLE001 - older drivers lack the bus-width query
        return None
    return bus_bits // 8 * clock_mhz * 1_000_000 * 2 if bus_bits > 0 and clock_mhz > 0 else None


def _cuda_version(pynvml) -> str | None:  # noqa: ANN001
    try:
        version = int(pynvml.nvmlSystemGetCudaDriverVersion())
    except Exception:  # noqa: BLE001
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def probe_hardware() -> HardwareReport:
    gpus, gpu_error = probe_gpus()
    return HardwareReport(
        cpu=probe_cpu(),
        memory=probe_memory(),
        gpus=gpus,
        gpu_probe_error=gpu_error,
        platform={
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
        },
        packages=package_versions(),
    )
