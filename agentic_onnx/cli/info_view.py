"""Human rendering of `onnx info`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from agentic_onnx.cli.output import Output
from agentic_onnx.cli.render import key_value_table
from agentic_onnx.core.machine.speed_estimate import format_rate


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.1f} GiB"


def render_info(out: Output, report: dict[str, Any]) -> None:
    cpu, memory, eps = report["cpu"], report["memory"], report["execution_providers"]
    out.table(key_value_table("CPU", [
        ("model", cpu["brand"]),
        ("architecture", cpu["arch"]),
        ("cores", f"{cpu['physical_cores']} physical, {cpu['logical_cores']} logical, "
                  f"{cpu['usable_cores']} usable"),
        ("SIMD", ", ".join(cpu["simd"]) or "none detected"),
        *_bandwidth_rows(report.get("speed")),
    ]))
    out.table(key_value_table("Memory", [
        ("total", _gib(memory["total_bytes"])), ("available", _gib(memory["available_bytes"])),
    ]))
    out.table(_gpu_table(report))
    builds = ", ".join(f"{b['distribution']} {b['version']}" for b in report["genai_build"])
    out.table(key_value_table("Execution providers", [
        ("genai build", builds or "not installed"),
        ("available", ", ".join(eps["available"])),
        ("selected (auto)", eps["selected"]),
        ("threads (CPU)", str(eps["default_threads"])),
    ]))
    out.table(key_value_table("Platform", [
        (key, value) for key, value in report["platform"].items()
    ] + [(name, version) for name, version in report["packages"].items() if name != "python"]))
    choice = report.get("recommendation")
    if choice:
        state = "installed" if choice["installed"] else \
            f"not installed: agentic-onnx onnx download {choice['model_id']}"
        rows = [("model", choice["model_id"]), ("why", choice["reason"]), ("state", state)]
        if choice.get("estimated_tokens_per_s") is not None:
            rate = format_rate(choice["estimated_tokens_per_s"])
            usable = report["speed"]["usable_tokens_per_s"]
            rows.insert(1, ("speed", f"~{rate} tok/s here, estimated "
                                     f"(usable: {usable:g} tok/s or more)"))
        out.table(key_value_table("Recommended model", rows))
    for item in report["advice"]:
        out.warning(f"{item['problem']} Fix: {item['fix']}")


def _bandwidth_rows(speed: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not speed:
        return []
    if speed["read_bandwidth_gbps"] is None:
        return [("memory read", "not measured (needs numpy)")]
    when = speed["measured_at"][:16].replace("T", " ")
    source = "--refresh re-measures" if speed["cached"] else "just measured"
    return [("memory read", f"{speed['read_bandwidth_gbps']:.1f} GB/s, {speed['threads']} "
                            f"threads ({when} UTC; {source})")]


def _gpu_table(report: dict[str, Any]) -> Table:
    if not report["gpus"]:
        reason = report.get("gpu_probe_error") or "none found"
        return key_value_table("GPUs", [("NVIDIA", f"none ({reason})")])
    table = Table(title="GPUs", title_justify="left")
    for column in ("#", "name", "memory total", "memory free", "bandwidth", "driver", "CUDA"):
        table.add_column(column)
    for gpu in report["gpus"]:
        bandwidth = gpu.get("memory_bandwidth_bytes_per_s")
        table.add_row(str(gpu["index"]), gpu["name"], _gib(gpu["memory_total_bytes"]),
                      _gib(gpu["memory_free_bytes"]),
                      f"{bandwidth / 1e9:.0f} GB/s" if bandwidth else "unknown",
                      gpu["driver_version"], gpu["cuda_version"] or "unknown")
    return table
