"""`onnx info`: the machine, the genai build and the execution providers."""

from __future__ import annotations

import json

import psutil

from agentic_onnx.core.genai_build import swap_command
from agentic_onnx.core.system_report import genai_build_advice, hardware_target

from .conftest import run_cli


def test_info_json_schema_and_values_match_the_machine():
    result = run_cli("onnx", "info", "--json")
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
    from agentic_onnx.core.hardware import probe_gpus

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
