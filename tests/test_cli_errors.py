"""Every bad input: one line on stderr, a documented exit code, no traceback."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.core.errors import ExitCode

from .conftest import MODELS, run_cli, run_cli_process

PHI3 = str(MODELS / "tiny-phi3-fp32")


def assert_clean_failure(result, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""


def test_missing_model_path(tmp_path):
    result = run_cli_process("run", "-m", str(tmp_path / "nope"), "-t", "hi")
    assert_clean_failure(result, ExitCode.MODEL_NOT_FOUND, "not found")


def test_folder_without_genai_config(tmp_path):
    result = run_cli("run", "-m", str(tmp_path), "-t", "hi")
    assert_clean_failure(result, ExitCode.MODEL_NOT_FOUND, "genai_config.json")


def test_garbled_genai_config(model_copy):
    folder = model_copy("tiny-phi3-fp32")
    (folder / "genai_config.json").write_text('{"model": {', encoding="utf-8")
    result = run_cli("run", "-m", str(folder), "-t", "hi")
    assert_clean_failure(result, ExitCode.MODEL_NOT_FOUND, "not valid JSON")


def test_missing_onnx_file_named_by_the_config(model_copy):
    folder = model_copy("tiny-phi3-fp32")
    config = json.loads((folder / "genai_config.json").read_text())
    (folder / config["model"]["decoder"]["filename"]).unlink()
    result = run_cli("run", "-m", str(folder), "-t", "hi")
    assert_clean_failure(result, ExitCode.MODEL_NOT_FOUND, config["model"]["decoder"]["filename"])


def test_decoder_filename_is_read_from_config_not_assumed(model_copy):
    folder = model_copy("tiny-phi3-fp32")
    config = json.loads((folder / "genai_config.json").read_text())
    (folder / "model.onnx").rename(folder / "decoder-renamed.onnx")
    config["model"]["decoder"]["filename"] = "decoder-renamed.onnx"
    (folder / "genai_config.json").write_text(json.dumps(config))
    result = run_cli("run", "-m", str(folder), "-t", "hi", "--max-tokens", "3")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("task", ["", "   \n"])
def test_empty_task(task):
    assert_clean_failure(run_cli("run", "-m", PHI3, "-t", task), ExitCode.USAGE_ERROR, "empty")


def test_no_task_and_nothing_on_stdin():
    assert_clean_failure(run_cli("run", "-m", PHI3), ExitCode.USAGE_ERROR, "empty")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--temperature", "-1"), ("--top-p", "0"), ("--top-p", "2"), ("--max-tokens", "0"),
     ("--top-k", "0"), ("--threads", "0"), ("--seed", "-5")],
)
def test_out_of_range_option(flag, value):
    result = run_cli("run", "-m", PHI3, "-t", "hi", flag, value)
    assert_clean_failure(result, ExitCode.USAGE_ERROR, flag)


@pytest.mark.parametrize("ep", ["cuda", "dml", "webgpu"])
def test_unavailable_execution_provider_is_an_error_not_a_silent_cpu_run(ep):
    result = run_cli("run", "-m", PHI3, "-t", "hi", "-e", ep)
    assert_clean_failure(result, ExitCode.EXECUTION_PROVIDER_UNAVAILABLE, "not available")


def test_unknown_execution_provider_is_a_usage_error():
    result = run_cli("run", "-m", PHI3, "-t", "hi", "-e", "tpu")  # a typo, not a missing install
    assert_clean_failure(result, ExitCode.USAGE_ERROR, "tpu")


def test_prompt_too_long_for_the_context():
    result = run_cli("run", "-m", PHI3, "-t", "word " * 600)
    assert_clean_failure(result, ExitCode.USAGE_ERROR, "context")


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli_process("run", "-m", str(tmp_path / "nope"), "-t", "hi", "--debug")
    assert result.returncode == ExitCode.MODEL_NOT_FOUND  # the same code, with the traceback
    assert "Traceback" in result.stderr and "ModelNotFoundError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: ")
