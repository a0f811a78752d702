"""How every command fails: one line on stderr, the documented exit code, and with `--json`
exactly one JSON error object on stdout; unexpected exceptions never show a raw traceback.

Most cases call `main(argv)` in process (it returns the exit code); one goes through the
installed entry point to prove the console script exits with that code."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.cli.main import main
from agentic_onnx.core.errors import ExitCode

from .conftest import MODELS, run_cli_process
from .fake_cloud import ok, status
from .router_support import TINY, anthropic_fake, cloud_keys, hybrid_config, write_config  # noqa: F401

PHI3 = str(MODELS / "tiny-phi3-fp32")


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, the non-empty stderr lines) of one in-process run."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def error_object(stdout: str) -> dict:
    """The one JSON object on stdout (json.loads fails on a second object or on extra text)."""
    data = json.loads(stdout)
    assert set(data["error"]) >= {"message", "exit_code", "type"}
    return data


def test_routed_failure_with_json_is_one_error_object_with_attempts(capsys, tmp_path):
    code, out, err = call(capsys, "run", "-m", str(tmp_path / "missing"), "-t", "hi", "--json")
    assert code == ExitCode.MODEL_NOT_FOUND
    data = error_object(out)
    assert data["error"]["exit_code"] == code and data["error"]["type"] == "ModelNotFoundError"
    assert [a["provider"] for a in data["attempts"]] == ["onnx"]
    assert data["attempts"][0]["outcome"] == "failed"
    assert len(err) == 1 and err[0].startswith("Error: ")


def test_same_failure_without_json_leaves_stdout_empty(capsys, tmp_path):
    code, out, err = call(capsys, "run", "-m", str(tmp_path / "missing"), "-t", "hi")
    assert code == ExitCode.MODEL_NOT_FOUND and out == "" and len(err) == 1


@pytest.mark.parametrize("argv", [
    ["run", "-t", "hi", "--no-such-option", "--json"],          # found by Typer's parser
    ["run", "-t", "hi", "--threads", "zero", "--json"],         # a value Typer cannot convert
    ["run", "-m", PHI3, "-t", "hi", "--threads", "0", "--json"],  # our own range check
    ["onnx", "benchmark", "--json"],                            # our check inside the command
])
def test_usage_errors_with_json_are_error_objects_with_exit_2(capsys, argv):
    code, out, err = call(capsys, *argv)
    assert code == ExitCode.USAGE_ERROR
    data = error_object(out)
    assert data["error"]["exit_code"] == 2 and data["error"]["type"] == "UsageError"
    assert len(err) == 1 and err[0].startswith("Error: ")


def test_a_json_flag_after_double_dash_is_not_an_option():
    from agentic_onnx.cli.failures import asks_for_json

    assert asks_for_json(["run", "--json", "-t", "x"])
    assert not asks_for_json(["run", "-t", "x", "--", "--json"])


def _explode(*args, **kwargs):
    raise RuntimeError("[ONNXRuntimeError] : 2 : bad input sk-live-0123456789abcdef\n"
                       "second line of the runtime's report")


def test_unexpected_exception_is_one_redacted_line_and_exit_1(capsys, monkeypatch):
    monkeypatch.setattr("agentic_onnx.core.models.store.installed_models", _explode)
    code, out, err = call(capsys, "onnx", "list")
    assert code == ExitCode.RUNTIME_ERROR and out == ""
    assert len(err) == 1, err
    assert err[0].startswith("Error: Unexpected error: RuntimeError: [ONNXRuntimeError]")
    assert "--debug" in err[0]
    assert "0123456789abcdef" not in err[0] and "second line" not in err[0]


def test_unexpected_exception_with_json_and_debug(capsys, monkeypatch):
    monkeypatch.setattr("agentic_onnx.core.models.store.installed_models", _explode)
    code, out, _ = call(capsys, "onnx", "list", "--json")
    assert code == 1 and error_object(out)["error"]["type"] == "UnexpectedError"
    code, out, err = call(capsys, "onnx", "list", "--debug")
    assert code == 1 and out == ""
    assert err[0].startswith("Traceback") and err[-1].startswith("Error: Unexpected error")


def test_threshold_violation_with_json_prints_the_report_inside_one_error_object(capsys):
    code, out, _ = call(capsys, "onnx", "benchmark", "-m", PHI3, "--json", "-n", "1",
                        "--warmup", "0", "--prompt-tokens", "4", "--gen-tokens", "2",
                        "--min-gen-tps", "1000000000")
    assert code == ExitCode.THRESHOLD_VIOLATED
    data = error_object(out)
    assert data["error"]["type"] == "ThresholdViolatedError"
    assert data["violations"] and data["runs"]  # the report is still there for the script


def test_console_script_exits_with_the_code_main_returns(tmp_path):
    result = run_cli_process("run", "-m", str(tmp_path / "missing"), "-t", "hi", "--json")
    assert result.returncode == ExitCode.MODEL_NOT_FOUND
    assert error_object(result.stdout)["error"]["exit_code"] == ExitCode.MODEL_NOT_FOUND
    assert "Traceback" not in result.stderr


def test_router_benchmark_fails_when_every_request_of_a_provider_failed(
        capsys, tmp_path, anthropic_fake, cloud_keys):
    anthropic_fake.script(status(401), status(401))
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    code, out, err = call(capsys, "router", "benchmark", "--providers", f"anthropic,onnx:{TINY}",
                          "-n", "2", "--max-tokens", "2", "--config", str(config), "--json")
    assert code == ExitCode.PROVIDER_ERROR
    data = error_object(out)
    assert [r["provider"] for r in data["results"]] == ["anthropic", "onnx"]
    assert [r["success_rate"] for r in data["results"]] == [0.0, 1.0]
    assert "anthropic" in data["error"]["message"] and "onnx" not in data["error"]["message"]
    assert anthropic_fake.count == 2


def test_router_benchmark_with_some_failures_still_succeeds(capsys, tmp_path, anthropic_fake,
                                                            cloud_keys):
    anthropic_fake.script(status(401), ok())
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    code, out, _ = call(capsys, "router", "benchmark", "--providers", "anthropic", "-n", "2",
                        "--config", str(config), "--json")
    assert code == 0 and json.loads(out)["results"][0]["success_rate"] == 0.5


def test_unknown_execution_provider_is_a_usage_error(capsys):
    code, out, err = call(capsys, "run", "-m", PHI3, "-t", "hi", "-e", "foo")
    assert code == ExitCode.USAGE_ERROR and out == "" and len(err) == 1 and "foo" in err[0]
    code, _, _ = call(capsys, "onnx", "benchmark", "-m", PHI3, "--provider", "foo")
    assert code == ExitCode.USAGE_ERROR


def test_benchmark_takes_the_seeds_provider_spelling(capsys):
    code, out, _ = call(capsys, "onnx", "benchmark", "-m", PHI3, "--provider", "cpu", "--json",
                        "-n", "1", "--warmup", "0", "--prompt-tokens", "4", "--gen-tokens", "2")
    assert code == 0 and [run["execution_provider"] for run in json.loads(out)["runs"]] == ["cpu"]


def test_the_usage_log_counts_requests_that_reached_a_provider_not_typos(capsys, tmp_path):
    from agentic_onnx.router import usage as usage_log

    code, _, _ = call(capsys, "run", "-m", str(tmp_path / "typo"), "-t", "hi")
    assert code == ExitCode.MODEL_NOT_FOUND
    assert not usage_log.usage_db_path().exists() or usage_log.rows() == []
    code, _, _ = call(capsys, "run", "-m", PHI3, "-t", "hi", "--max-tokens", "2")
    assert code == 0
    assert [(row["provider"], row["outcome"]) for row in usage_log.rows()] == [("onnx", "ok")]
