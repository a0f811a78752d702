"""Which model suits this machine: the seed's `selectModelForHardware`, preferring what is installed.

The seed's rule (agentic-flow's ONNX plan): a usable CUDA GPU with enough VRAM takes the GPU
variant; else enough RAM takes Phi-3 medium; else Phi-3 mini. "Usable" means an NVIDIA GPU *and*
an onnxruntime-genai build that can use CUDA. The three picks are data (`recommendation` in the
catalog); the thresholds are each entry's `requirements`. Everything here is pure except
`probe_machine`, so tests pass in a `MachineFacts`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from agentic_onnx.core.catalog import Catalog, CatalogEntry

GIB = 2**30
EP_RANK = {"cuda": 0, "dml": 1, "webgpu": 2, "cpu": 3}
EP_NAMES = {"cuda": "CUDA", "dml": "DirectML", "webgpu": "WebGPU", "cpu": "CPU"}


@dataclass(frozen=True)
class MachineFacts:
    ram_bytes: int | None  # None: unknown (then RAM is not held against a model)
    gpu_vram_bytes: tuple[int, ...]  # NVIDIA GPUs' total memory
    execution_providers: tuple[str, ...]  # what the installed genai build can use

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


def probe_machine() -> MachineFacts:
    """RAM, NVIDIA GPUs and usable EPs of this machine; every probe degrades to 'none'."""
    from agentic_onnx.core.hardware import probe_gpus, probe_memory

    gpus, _ = probe_gpus()
    try:
        from agentic_onnx.core.execution_provider import available_execution_providers

        providers = tuple(available_execution_providers())
    except Exception:  # noqa: BLE001 - no genai build: only the CPU
        providers = ("cpu",)
    return MachineFacts(probe_memory().total_bytes, tuple(g.memory_total_bytes for g in gpus),
                        providers)


def fit(entry: CatalogEntry, facts: MachineFacts) -> Fit:
    """Whether `entry` runs well here, judged on RAM, the EP it needs and VRAM."""
    need_ram = entry.requirements.min_ram_gb
    if facts.ram_bytes is not None and facts.ram_bytes < need_ram * GIB * 0.95:
        return Fit(False, f"needs {need_ram:g} GiB RAM (has {facts.ram_bytes / GIB:.1f})")
    ep = entry.execution_provider
    if ep == "cpu":
        return Fit(True, "runs on the CPU")
    if ep not in facts.execution_providers:
        return Fit(False, f"{EP_NAMES[ep]} not available")
    if ep == "cuda":
        vram, need = facts.cuda_vram_bytes, entry.requirements.min_vram_gb
        if vram == 0:
            return Fit(False, "needs an NVIDIA GPU")
        if vram < need * GIB * 0.95:
            return Fit(False, f"needs {need:g} GiB VRAM (has {vram / GIB:.1f})")
        return Fit(True, f"a CUDA GPU with {vram / GIB:.0f} GiB is usable")
    return Fit(True, f"{EP_NAMES[ep]} is available")


def recommend(catalog: Catalog, facts: MachineFacts, installed: Collection[str]) -> Choice:
    """The model `run` uses without `--model`."""
    picks = catalog.recommendation
    seed = [catalog.get(i) for i in (picks.gpu, picks.large_cpu, picks.small_cpu)]
    fitting = [(e, fit(e, facts)) for e in seed if e is not None and fit(e, facts).fits]
    best = fitting[0][0] if fitting else catalog.get(picks.small_cpu)
    assert best is not None
    why_best = _seed_reason(best, facts, picks.gpu, picks.large_cpu)
    for entry, _ in fitting:
        if entry.id in installed:
            extra = "" if entry.id == best.id else \
                f"; {best.id} would suit this machine better: {why_best}"
            return Choice(entry.id, f"installed{extra}", True)
    for entry in catalog.models:
        if entry.id in installed and fit(entry, facts).fits:
            return Choice(entry.id, f"installed; {best.id} would suit this machine better: "
                                    f"{why_best}", True)
    return Choice(best.id, why_best, best.id in installed)


def _seed_reason(best: CatalogEntry, facts: MachineFacts, gpu_id: str, large_id: str) -> str:
    if best.id == gpu_id:
        return f"a CUDA GPU with {facts.cuda_vram_bytes / GIB:.0f} GiB is usable"
    ram = "unknown RAM" if facts.ram_bytes is None else f"{facts.ram_bytes / GIB:.0f} GiB RAM"
    if best.id == large_id:
        return f"no usable CUDA GPU; {ram} holds the larger model"
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
