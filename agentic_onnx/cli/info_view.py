"""Human rendering of `onnx info`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from agentic_onnx.cli import render


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.1f} GiB"


def render_info(report: dict[str, Any]) -> None:
    cpu, memory, eps = report["cpu"], report["memory"], report["execution_providers"]
    render.print_table(render.key_value_table("CPU", [
        ("model", cpu["brand"]),
        ("architecture", cpu["arch"]),
        ("cores", f"{cpu['physical_cores']} physical, {cpu['logical_cores']} logical, "
                  f"{cpu['usable_cores']} usable"),
        ("SIMD", ", ".join(cpu["simd"]) or "none detected"),
    ]))
    render.print_table(render.key_value_table("Memory", [
        ("total", _gib(memory["total_bytes"])), ("available", _gib(memory["available_bytes"])),
    ]))
    render.print_table(_gpu_table(report))
    builds = ", ".join(f"{b['distribution']} {b['version']}" for b in report["genai_build"])
    render.print_table(render.key_value_table("Execution providers", [
        ("genai build", builds or "not installed"),
        ("available", ", ".join(eps["available"])),
        ("selected (auto)", eps["selected"]),
        ("threads (CPU)", str(eps["default_threads"])),
    ]))
    render.print_table(render.key_value_table("Platform", [
        (key, value) for key, value in report["platform"].items()
    ] + [(name, version) for name, version in report["packages"].items() if name != "python"]))
    choice = report.get("recommendation")
    if choice:
        state = "installed" if choice["installed"] else \
            f"not installed: agentic-onnx onnx download {choice['model_id']}"
        render.print_table(render.key_value_table("Recommended model", [
            ("model", choice["model_id"]), ("why", choice["reason"]), ("state", state),
        ]))
    for item in report["advice"]:
        render.warning(f"{item['problem']} Fix: {item['fix']}")


def _gpu_table(report: dict[str, Any]) -> Table:
    if not report["gpus"]:
        reason = report.get("gpu_probe_error") or "none found"
        return render.key_value_table("GPUs", [("NVIDIA", f"none ({reason})")])
    table = Table(title="GPUs", title_justify="left")
    for column in ("#", "name", "memory total", "memory free", "driver", "CUDA"):
        table.add_column(column)
    for gpu in report["gpus"]:
        table.add_row(str(gpu["index"]), gpu["name"], _gib(gpu["memory_total_bytes"]),
                      _gib(gpu["memory_free_bytes"]), gpu["driver_version"],
                      gpu["cuda_version"] or "unknown")
    return table
