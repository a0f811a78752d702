"""What `onnx info` reports: hardware, the genai build, usable execution providers, and fixes."""

from __future__ import annotations

from typing import Any

from agentic_onnx.core.machine.bandwidth import CpuSpeedCache, cache_path, cpu_speed_facts
from agentic_onnx.core.machine.execution_provider import EP_PREFERENCE, available_execution_providers
from agentic_onnx.core.machine.genai_build import installed_genai_builds, swap_command
from agentic_onnx.core.machine.hardware import default_threads, probe_hardware
from agentic_onnx.core.machine.speed_estimate import USABLE_TOKENS_PER_S, SpeedFacts


def system_report(refresh: bool = False) -> dict[str, Any]:
    """One JSON-ready object: `cpu`, `memory`, `gpus`, `execution_providers`, `platform`,
    `packages`, `genai_build`, `speed`, `advice`, `recommendation`. `refresh` measures the read
    bandwidth again instead of using the cached figure."""
    hardware = probe_hardware()
    report = hardware.to_json()
    available = available_execution_providers()
    builds = installed_genai_builds()
    report["execution_providers"] = {
        "available": available,
        "selected": hardware_target(available, bool(report["gpus"])),
        "preference": list(EP_PREFERENCE),
        "default_threads": default_threads(),
    }
    report["genai_build"] = [{"distribution": b.distribution, "kind": b.kind, "version": v}
                             for b, v in builds]
    report["advice"] = genai_build_advice([b.kind for b, _ in builds], bool(report["gpus"]),
                                          "cuda" in available)
    report["speed"] = speed_report(cpu_speed_facts(refresh=refresh, cpu=hardware.cpu))
    report["recommendation"] = model_recommendation(report)
    return report


def speed_report(cpu: CpuSpeedCache) -> dict[str, Any]:
    """The measured read bandwidth and what the decode-rate estimates rest on."""
    return {"read_bandwidth_gbps": cpu.read_bandwidth_gbps, "threads": cpu.threads,
            "simd": list(cpu.simd), "measured_at": cpu.measured_at, "probe_s": cpu.probe_s,
            "cached": cpu.cached, "cache_file": str(cache_path()),
            "usable_tokens_per_s": USABLE_TOKENS_PER_S}


def model_recommendation(report: dict[str, Any]) -> dict[str, Any]:
    """The model `run` uses without --model on this machine (see core/models/recommend.py)."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.recommend import machine_facts, recommend
    from agentic_onnx.core.models.store import installed_models

    speed = report.get("speed")
    cpu = None if speed is None else SpeedFacts(speed["read_bandwidth_gbps"], speed["threads"],
                                                tuple(speed["simd"]))
    facts = machine_facts(report["memory"]["total_bytes"], report["gpus"],
                          report["execution_providers"]["available"], cpu)
    installed = {manifest.id for manifest, _ in installed_models()}
    choice = recommend(load_catalog(), facts, installed)
    rate = choice.estimate
    return {"model_id": choice.model_id, "reason": choice.reason, "installed": choice.installed,
            "estimated_tokens_per_s": None if rate is None else round(rate.tokens_per_s, 1),
            "estimate_bound": None if rate is None else rate.bound}


def hardware_target(available: list[str], has_nvidia_gpu: bool) -> str:
    """The EP this machine is best served by: CUDA with an NVIDIA GPU and the CUDA build, else
    DirectML where available, else the CPU. WebGPU runs only WebGPU variants (chosen per model),
    since its adapter may be a slow software one."""
    if "cuda" in available and has_nvidia_gpu:
        return "cuda"
    return "dml" if "dml" in available else "cpu"


def genai_build_advice(installed_kinds: list[str], has_nvidia_gpu: bool,
                       cuda_available: bool) -> list[dict[str, str]]:
    """Problems with the installed genai build, each with the exact command that fixes it."""
    advice = []
    if not installed_kinds:
        advice.append({"problem": "onnxruntime-genai is not installed.",
                       "fix": "pip install onnxruntime-genai onnxruntime"})
    elif len(installed_kinds) > 1:
        keep = "cuda" if "cuda" in installed_kinds else installed_kinds[0]
        advice.append({"problem": f"Several onnxruntime-genai builds are installed "
                       f"({', '.join(installed_kinds)}); they overwrite each other.",
                       "fix": swap_command(keep)})
    elif has_nvidia_gpu and not cuda_available:
        advice.append({"problem": "An NVIDIA GPU is present but the installed onnxruntime-genai "
                       f"build ({installed_kinds[0]}) cannot use CUDA.",
                       "fix": swap_command("cuda")})
    return advice
