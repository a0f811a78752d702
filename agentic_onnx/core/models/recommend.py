"""Which model suits this machine: the best that fits *and* decodes at a usable rate here,
preferring what is installed.

The candidates are the seed's `selectModelForHardware` picks, best first (the catalog's
`recommendation`: the GPU variant, the large CPU model, the small CPU model). One fits when RAM,
the execution provider and VRAM allow it (each entry's `requirements`; "usable CUDA" means an
NVIDIA GPU *and* a genai build that can use it). With speed facts (a measured read bandwidth,
core/machine/bandwidth.py), the best candidate whose estimated decode rate (core/machine/speed_estimate.py)
reaches USABLE_TOKENS_PER_S wins, else the fastest; without them, the seed's RAM-only rule.
Everything here is pure except `probe_machine`, so tests pass in a `MachineFacts`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from agentic_onnx.core.models.catalog import Catalog, CatalogEntry
from agentic_onnx.core.machine.execution_provider import EP_LABELS
from agentic_onnx.core.machine.speed_estimate import (
    GPU_BANDWIDTH_UNKNOWN_GBPS,
    USABLE_TOKENS_PER_S,
    SpeedEstimate,
    SpeedFacts,
    estimate_cpu,
    estimate_gpu,
    gpu_bandwidth_by_name,
)

GIB = 2**30
EP_RANK = {"cuda": 0, "dml": 1, "webgpu": 2, "cpu": 3}


@dataclass(frozen=True)
class MachineFacts:
    ram_bytes: int | None  # None: unknown (then RAM is not held against a model)
    gpu_vram_bytes: tuple[int, ...]  # NVIDIA GPUs' total memory
    execution_providers: tuple[str, ...]  # what the installed genai build can use
    speed: SpeedFacts | None = None  # None: no estimate, the seed's RAM-only rule

    @property
    def cuda_vram_bytes(self) -> int:
        """VRAM of the largest GPU CUDA can use; 0 when CUDA is not usable."""
        if "cuda" not in self.execution_providers or not self.gpu_vram_bytes:
            return 0
        return max(self.gpu_vram_bytes)


@dataclass(frozen=True)
class Fit:
    fits: bool
    reason: str  # why not, or what makes it fit


@dataclass(frozen=True)
class Choice:
    model_id: str
    reason: str
    installed: bool
    estimate: SpeedEstimate | None = None  # decode rate here, when it could be estimated


def probe_machine(refresh: bool = False) -> MachineFacts:
    """RAM, NVIDIA GPUs, usable EPs and speed facts of this machine; every probe degrades to
    'none'. The read bandwidth is measured once and cached (core/machine/bandwidth.py)."""
    from dataclasses import asdict

    from agentic_onnx.core.machine.bandwidth import cpu_speed_facts
    from agentic_onnx.core.machine.hardware import probe_gpus, probe_memory

    gpus, _ = probe_gpus()
    try:
        from agentic_onnx.core.machine.execution_provider import available_execution_providers

        providers = tuple(available_execution_providers())
    except Exception:  # noqa: BLE001 - no genai build: only the CPU
        providers = ("cpu",)
    cpu = cpu_speed_facts(refresh=refresh)
    return machine_facts(probe_memory().total_bytes, [asdict(g) for g in gpus], providers,
                         SpeedFacts(cpu.read_bandwidth_gbps, cpu.threads, cpu.simd))


def machine_facts(ram_bytes: int | None, gpus: list[dict], providers: Collection[str],
                  cpu: SpeedFacts | None) -> MachineFacts:
    """MachineFacts from probe results (`gpus`: GpuInfo as dicts, as `onnx info` reports them);
    the GPU bandwidth is the largest GPU's, from NVML, else from its name."""
    speed = cpu
    largest = max(gpus, key=lambda g: g["memory_total_bytes"], default=None)
    if cpu is not None and largest is not None:
        measured = largest.get("memory_bandwidth_bytes_per_s")
        gbps = measured / 1e9 if measured else gpu_bandwidth_by_name(largest.get("name", ""))
        speed = SpeedFacts(cpu.cpu_read_gbps, cpu.cpu_threads, cpu.simd, gbps)
    return MachineFacts(ram_bytes, tuple(g["memory_total_bytes"] for g in gpus), tuple(providers),
                        speed)


def estimate(entry: CatalogEntry, facts: MachineFacts) -> SpeedEstimate | None:
    """The decode rate `entry` would reach here; None for embedding models, EPs without a
    bandwidth figure (DirectML, WebGPU), a CUDA variant without usable CUDA, or no speed facts."""
    speed = facts.speed
    if speed is None or entry.kind != "chat":
        return None
    if entry.execution_provider == "cpu" and speed.cpu_read_gbps:
        return estimate_cpu(entry.size_bytes, speed.cpu_read_gbps, speed.cpu_threads, speed.simd)
    if entry.execution_provider == "cuda" and facts.cuda_vram_bytes:
        gbps = speed.gpu_bandwidth_gbps or GPU_BANDWIDTH_UNKNOWN_GBPS
        return estimate_gpu(entry.size_bytes, gbps)
    return None


def fit(entry: CatalogEntry, facts: MachineFacts) -> Fit:
    """Whether `entry` runs well here, judged on RAM, the EP it needs and VRAM."""
    need_ram = entry.requirements.min_ram_gb
    if facts.ram_bytes is not None and facts.ram_bytes < need_ram * GIB * 0.95:
        return Fit(False, f"needs {need_ram:g} GiB RAM (has {facts.ram_bytes / GIB:.1f})")
    ep = entry.execution_provider
    if ep == "cpu":
        return Fit(True, "runs on the CPU")
    if ep not in facts.execution_providers:
        return Fit(False, f"{EP_LABELS[ep]} not available")
    if ep == "cuda":
        vram, need = facts.cuda_vram_bytes, entry.requirements.min_vram_gb
        if vram == 0:
            return Fit(False, "needs an NVIDIA GPU")
        if vram < need * GIB * 0.95:
            return Fit(False, f"needs {need:g} GiB VRAM (has {vram / GIB:.1f})")
        return Fit(True, f"a CUDA GPU with {vram / GIB:.0f} GiB is usable")
    return Fit(True, f"{EP_LABELS[ep]} is available")


def recommend(catalog: Catalog, facts: MachineFacts, installed: Collection[str]) -> Choice:
    """The model `run` uses without `--model`: an installed one that fits and is usable, else
    the best candidate that is (see the module docstring)."""
    picks = catalog.recommendation
    seed = [e for e in (catalog.get(i) for i in (picks.gpu, picks.large_cpu, picks.small_cpu))
            if e is not None]
    fitting = [e for e in seed if fit(e, facts).fits]
    rates = {e.id: estimate(e, facts) for e in seed}
    best = _best(fitting, rates) or catalog.get(picks.small_cpu)
    assert best is not None
    why_best = _best_reason(best, facts, rates, fitting, picks.gpu, picks.large_cpu)
    for entry in fitting:
        if entry.id in installed and _usable(rates[entry.id]):
            extra = "" if entry.id == best.id else \
                f"; {best.id} would suit this machine better: {why_best}"
            return Choice(entry.id, f"installed{extra}", True, rates[entry.id])
    too_slow = ""
    for entry in catalog.models:
        if entry.kind != "chat" or entry.id not in installed or not fit(entry, facts).fits:
            continue
        rate = estimate(entry, facts)
        if rate is None or rate.usable:
            return Choice(entry.id, f"installed; {best.id} would suit this machine better: "
                                    f"{why_best}", True, rate)
        if not too_slow and entry.id not in why_best:
            too_slow = f"; {entry.id} is installed but would decode {rate.label()}"
    return Choice(best.id, why_best + too_slow, best.id in installed, rates.get(best.id))


def _usable(rate: SpeedEstimate | None) -> bool:
    """Unknown counts as usable: without speed facts the seed's rule decides alone."""
    return rate is None or rate.usable


def _best(fitting: list[CatalogEntry],
          rates: dict[str, SpeedEstimate | None]) -> CatalogEntry | None:
    """The first (best) candidate that is usable here, else the fastest one (all have rates)."""
    usable = [e for e in fitting if _usable(rates[e.id])]
    if usable:
        return usable[0]
    return max(fitting, key=lambda e: _tokens_per_s(rates[e.id]), default=None)


def _tokens_per_s(rate: SpeedEstimate | None) -> float:
    return 0.0 if rate is None else rate.tokens_per_s


def _best_reason(best: CatalogEntry, facts: MachineFacts, rates: dict[str, SpeedEstimate | None],
                 fitting: list[CatalogEntry], gpu_id: str, large_id: str) -> str:
    rate = rates.get(best.id)
    if rate is not None and not rate.usable:
        return (f"no recommended model reaches the usable {USABLE_TOKENS_PER_S:g} tok/s here; "
                f"{best.id} is the fastest that fits ({rate.label()} estimated)")
    # better candidates ranked above `best` were passed over for being too slow
    above = fitting[:fitting.index(best)] if best in fitting else []
    slower = [(e.id, r) for e in above if (r := rates[e.id]) is not None]
    why = _seed_reason(best, facts, gpu_id, large_id,
                       large_fits=any(model_id == large_id for model_id, _ in slower))
    if rate is None:
        return why
    why += f"; {rate.label()} estimated"
    for model_id, slow_rate in slower:
        why += (f" ({model_id} fits but would decode {slow_rate.label()}, "
                f"under the usable {USABLE_TOKENS_PER_S:g} tok/s)")
    return why


def _seed_reason(best: CatalogEntry, facts: MachineFacts, gpu_id: str, large_id: str,
                 large_fits: bool = False) -> str:
    if best.id == gpu_id:
        return f"a CUDA GPU with {facts.cuda_vram_bytes / GIB:.0f} GiB is usable"
    ram = "unknown RAM" if facts.ram_bytes is None else f"{facts.ram_bytes / GIB:.0f} GiB RAM"
    if best.id == large_id:
        return f"no usable CUDA GPU; {ram} holds the larger model"
    if large_fits:
        return "no usable CUDA GPU"  # the caller says why the larger model was passed over
    return f"no usable CUDA GPU and {ram}: the small model fits best"


def choose_variant(catalog: Catalog, family: str, facts: MachineFacts,
                   installed: Collection[str]) -> Choice:
    """The variant of `family` for this machine: an installed one that fits first, then the
    fastest EP that fits; never silently a CPU variant when a GPU one was asked for by id."""
    variants = catalog.family(family)
    fits = {v.id: fit(v, facts) for v in variants}
    fitting = sorted((v for v in variants if fits[v.id].fits),
                     key=lambda v: EP_RANK[v.execution_provider])
    if not fitting:
        fallback = min(variants, key=lambda v: (EP_RANK[v.execution_provider] != 3, v.size_bytes))
        return Choice(fallback.id, f"no variant fits this machine well ({fits[fallback.id].reason}); "
                                   "trying the CPU variant", fallback.id in installed)
    best = fitting[0]
    for variant in fitting:
        if variant.id in installed:
            extra = "" if variant.id == best.id else f"; {best.id} would be faster here"
            return Choice(variant.id, f"installed, {fits[variant.id].reason}{extra}", True)
    return Choice(best.id, fits[best.id].reason, False)


def download_summary(entry: CatalogEntry, facts: MachineFacts, free_bytes: int | None) -> str:
    """What a download offer states: size, free disk after it, how long it should take (at the
    last download's speed, once one was measured), and the decode rate here."""
    from agentic_onnx.core.models.download_rate import eta_text, last_rate
    from agentic_onnx.core.models.store import format_bytes

    parts = [format_bytes(entry.size_bytes)]
    if free_bytes is not None:
        parts.append(f"{format_bytes(max(0, free_bytes - entry.size_bytes))} free after")
    eta = eta_text(entry.size_bytes, last_rate())
    if eta is not None:
        parts.append(eta)
    rate = estimate(entry, facts)
    if rate is not None:
        slow = "" if rate.usable else f" (slow: under {USABLE_TOKENS_PER_S:g})"
        parts.append(f"{rate.label()} here{slow}")
    return "; ".join(parts)


def describe_download(model_id: str) -> str | None:
    """`download_summary` for a catalog model on this machine; None for other models."""
    import shutil

    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.paths import store_dir

    entry = load_catalog().get(model_id)
    if entry is None:
        return None
    where = store_dir()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free: int | None = shutil.disk_usage(where).free
    except OSError:
        free = None
    return download_summary(entry, probe_machine(), free)
