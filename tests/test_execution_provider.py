from pathlib import Path

import pytest

from agentic_onnx.core.errors import ExecutionProviderUnavailableError, ExitCode, UsageError
from agentic_onnx.core.machine.execution_provider import choose_execution_provider
from agentic_onnx.core.models.model_folder import ModelFolder


def variant(*providers: str) -> ModelFolder:
    return ModelFolder(Path("/m/x"), "phi3", "model.onnx", 4096, providers, (2,))


@pytest.mark.parametrize(
    ("providers", "available", "expected"),
    [
        ((), ["cuda", "dml", "webgpu", "cpu"], "cpu"),  # a CPU variant stays on the CPU
        (("cuda",), ["cuda", "cpu"], "cuda"),
        (("dml",), ["cuda", "dml", "cpu"], "dml"),  # matches the variant, not the best EP
        (("webgpu",), ["webgpu", "cpu"], "webgpu"),
        (("cuda",), ["cpu"], "cpu"),  # variant's EP missing: CPU, with a warning
    ],
)
def test_auto_picks_the_best_available_ep_matching_the_variant(providers, available, expected):
    choice = choose_execution_provider("auto", variant(*providers), available)
    assert choice.provider == expected
    assert choice.may_fall_back_to_cpu == (expected != "cpu")


def test_auto_warns_when_a_gpu_variant_must_run_on_the_cpu():
    choice = choose_execution_provider("auto", variant("cuda"), ["cpu"])
    assert choice.warning and "CUDA" in choice.warning and "pip" in choice.warning


def test_explicit_unavailable_ep_is_an_error_with_the_install_command():
    with pytest.raises(ExecutionProviderUnavailableError) as caught:
        choose_execution_provider("cuda", variant(), ["cpu"])
    assert caught.value.exit_code == ExitCode.EXECUTION_PROVIDER_UNAVAILABLE
    assert 'pip install onnxruntime-genai-cuda "onnxruntime-gpu[cuda,cudnn]"' in caught.value.one_line()


def test_explicit_ep_never_falls_back():
    choice = choose_execution_provider("cuda", variant("cuda"), ["cuda", "cpu"])
    assert choice.provider == "cuda" and not choice.may_fall_back_to_cpu


def test_explicit_ep_on_another_variant_warns_but_runs():
    choice = choose_execution_provider("cpu", variant("cuda"), ["cuda", "cpu"])
    assert choice.provider == "cpu" and choice.warning


def test_unknown_ep_name_is_a_usage_error():
    with pytest.raises(UsageError) as raised:  # a typo (exit 2), not a missing install (exit 5)
        choose_execution_provider("tpu", variant(), ["cpu"])
    assert raised.value.exit_code == ExitCode.USAGE_ERROR
