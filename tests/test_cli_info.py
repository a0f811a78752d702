"""`onnx info`: the machine, the genai build and the execution providers."""

from __future__ import annotations

import json
import re

import psutil
import pytest

from agentic_onnx.core.machine.genai_build import swap_command
from agentic_onnx.core.machine.system_report import genai_build_advice, hardware_target

from .conftest import run_cli, run_cli_process


def test_info_json_schema_and_values_match_the_machine():
    result = run_cli_process("onnx", "info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("cpu", "memory", "gpus", "execution_providers", "platform", "packages"):
        assert key in data
    assert data["cpu"]["logical_cores"] == psutil.cpu_count(logical=True)
    assert data["cpu"]["physical_cores"] == psutil.cpu_count(logical=False)
    assert abs(data["memory"]["total_bytes"] - psutil.virtual_memory().total) < 2**20
    assert isinstance(data["gpus"], list)
    eps = data["execution_providers"]
    assert "cpu" in eps["available"] and eps["selected"] in eps["available"]
    assert data["packages"]["onnxruntime-genai"]  # the CPU build runs these tests
    assert [b["kind"] for b in data["genai_build"]] == ["cpu"]


def test_info_human_output_has_the_sections():
    result = run_cli("onnx", "info")
    assert result.returncode == 0, result.stderr
    for title in ("CPU", "Memory", "GPUs", "Execution providers", "Platform"):
        assert title in result.stdout


def test_no_gpu_means_an_empty_list_never_a_crash():
    from agentic_onnx.core.machine.hardware import probe_gpus

    gpus, reason = probe_gpus()
    assert isinstance(gpus, list)
    assert gpus or reason  # either GPUs, or the reason there are none


def test_gpu_with_cpu_build_advises_the_exact_swap_command():
    advice = genai_build_advice(["cpu"], has_nvidia_gpu=True, cuda_available=False)
    assert advice[0]["fix"] == swap_command("cuda")
    assert 'pip install onnxruntime-genai-cuda "onnxruntime-gpu[cuda,cudnn]"' in advice[0]["fix"]
    assert "onnxruntime-genai " in advice[0]["fix"]  # the CPU build is removed first


def test_no_advice_when_the_build_matches_the_hardware():
    assert genai_build_advice(["cpu"], has_nvidia_gpu=False, cuda_available=False) == []
    assert genai_build_advice(["cuda"], has_nvidia_gpu=True, cuda_available=True) == []


def test_two_builds_installed_is_flagged():
    advice = genai_build_advice(["cpu", "cuda"], has_nvidia_gpu=True, cuda_available=True)
    assert "Several" in advice[0]["problem"]


def test_hardware_target_prefers_cuda_only_with_a_gpu():
    assert hardware_target(["cuda", "cpu"], has_nvidia_gpu=True) == "cuda"
    assert hardware_target(["cuda", "cpu"], has_nvidia_gpu=False) == "cpu"
    assert hardware_target(["webgpu", "cpu"], has_nvidia_gpu=False) == "cpu"


# -- the read bandwidth, cached, and the speed estimates it drives -------------------------------

AVX512 = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]


def write_hardware_cache(read_gbps: float, simd: list[str] = AVX512) -> None:
    """A cache as if this machine had measured `read_gbps` with 2 threads and these SIMD flags:
    the CLI then estimates from these numbers instead of probing."""
    from agentic_onnx.core.machine.bandwidth import CACHE_SCHEMA, cache_path, cpu_fingerprint

    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text(json.dumps({
        "schema": CACHE_SCHEMA, "fingerprint": cpu_fingerprint(), "brand": "Test CPU",
        "simd": simd, "threads": 2, "read_bandwidth_gbps": read_gbps,
        "measured_at": "2026-01-01T00:00:00+00:00", "probe_s": 0.3}), encoding="utf-8")


def test_info_reuses_the_cached_bandwidth_and_refresh_measures_again():
    from agentic_onnx.core.machine.bandwidth import cache_path

    write_hardware_cache(1234.5)
    cached = json.loads(run_cli("onnx", "info", "--json").stdout)["speed"]
    assert (cached["read_bandwidth_gbps"], cached["cached"]) == (1234.5, True)
    assert cached["usable_tokens_per_s"] == 5.0 and cached["cache_file"] == str(cache_path())
    fresh = run_cli("onnx", "info", "--refresh", "--json")
    assert fresh.returncode == 0, fresh.stderr
    speed = json.loads(fresh.stdout)["speed"]
    assert speed["cached"] is False and 0 < speed["read_bandwidth_gbps"] != 1234.5
    stored = json.loads(cache_path().read_text(encoding="utf-8"))
    assert stored["read_bandwidth_gbps"] == speed["read_bandwidth_gbps"]
    assert stored["simd"] == json.loads(fresh.stdout)["cpu"]["simd"]  # this machine's, re-probed


def test_a_two_core_machine_is_offered_the_mini_model_with_its_speed():
    """2 AVX-512 cores with 40 GB/s (the team's machine): mini at ~11 tok/s, not medium at ~3."""
    write_hardware_cache(40.0)
    info = run_cli("onnx", "info")
    assert info.returncode == 0, info.stderr
    assert "memory read   40.0 GB/s, 2 threads" in info.stdout
    assert "~11 tok/s here, estimated (usable: 5 tok/s or more)" in info.stdout
    recommendation = json.loads(run_cli("onnx", "info", "--json").stdout)["recommendation"]
    assert recommendation["model_id"] == "phi-3-mini-4k-cpu"  # this test machine has no CUDA build
    assert recommendation["estimated_tokens_per_s"] == pytest.approx(11, abs=0.5)
    rows = {row["id"]: row for row in json.loads(run_cli("onnx", "models", "--json").stdout)}
    assert rows["phi-3-mini-4k-cpu"]["recommended"]
    assert rows["phi-3-medium-128k-cpu"]["estimated_tokens_per_s"] == pytest.approx(3.2, abs=0.1)
    assert rows["phi-3-mini-4k-cpu"]["estimate_bound"] == "CPU compute"
    assert rows["phi-3-mini-4k-gpu"]["estimated_tokens_per_s"] is None  # no usable CUDA here
    assert rows["all-minilm-l6-v2"]["estimated_tokens_per_s"] is None  # not a chat model
    table = run_cli("onnx", "models").stdout
    assert re.search(r"^\* phi-3-mini-4k-cpu .* ~11 ", table, re.M), table
    assert re.search(r"^  phi-3-medium-128k-cpu .* ~3\.2 ", table, re.M), table
    assert "t/s: estimated decode tokens/s" in table
