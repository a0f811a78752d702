"""`run` and the root form as users and scripts see them: stdin and stdout are pipes. Most tests
run the CLI in process (`run_cli`); the first goes through the installed console script."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import MODELS, expected_cases, run_cli, run_cli_process

ANSI = re.compile(r"\x1b\[")
PHI3 = str(MODELS / "tiny-phi3-fp32")
MODEL, CASE = next((m, c) for m, c in expected_cases() if len(c["messages"]) == 1
                   and not c["eos_reached"])
TASK = CASE["messages"][0]["content"]


def test_piped_output_is_the_plain_streamed_text_without_escape_codes():
    result = run_cli_process("run", "--model", str(MODELS / MODEL), "--task", TASK, "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CASE["text"] + "\n"
    assert not ANSI.search(result.stdout) and not ANSI.search(result.stderr)


def test_root_form_with_provider_onnx_does_what_run_does():
    result = run_cli("--provider", "onnx", "--model", str(MODELS / MODEL), "--task", TASK,
                     "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CASE["text"] + "\n"


@pytest.mark.parametrize("how", ["dash", "pipe"])
def test_task_from_stdin(how):
    args = ["--task", "-"] if how == "dash" else []
    result = run_cli("run", "--model", str(MODELS / MODEL), *args, "--max-tokens", "24", stdin=TASK)
    assert result.returncode == 0, result.stderr
    assert result.stdout == CASE["text"] + "\n"


def test_json_output_has_the_documented_schema():
    result = run_cli("run", "-m", str(MODELS / MODEL), "-t", TASK, "--max-tokens", "24", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"text", "provider", "model", "execution_provider", "finish_reason",
                         "stop_sequence", "usage", "timings", "cost_usd", "service", "deployment",
                         "cached", "route", "attempts"}
    assert data["deployment"] is None  # the onnx provider balances no deployments
    assert data["service"] is None  # answered in this process: no resident service runs
    assert data["cached"] is False  # no response cache in the config
    assert data["stop_sequence"] is None  # the model's end token or the budget ended it
    assert [a["provider"] for a in data["attempts"]] == ["onnx"]
    assert data["attempts"][0]["outcome"] == "ok"
    assert data["text"] == CASE["text"]
    assert (data["provider"], data["model"], data["execution_provider"]) == ("onnx", MODEL, "cpu")
    assert data["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": len(CASE["prompt_ids"]),
                             "completion_tokens": len(CASE["generated_ids"])}
    assert set(data["timings"]) == {"load_s", "ttft_ms", "first_token_ms", "decode_tokens_per_s",
                                    "total_s"}
    assert data["timings"]["ttft_ms"] > 0 and data["timings"]["decode_tokens_per_s"] > 0
    assert 0 < data["timings"]["first_token_ms"] <= data["timings"]["ttft_ms"]
    assert data["timings"]["total_s"] * 1000 >= data["timings"]["ttft_ms"]
    assert data["cost_usd"] == 0.0


def test_system_message_goes_through_the_chat_template():
    case = next(c for m, c in expected_cases() if m == MODEL and c["messages"][0]["role"] == "system")
    system, user = case["messages"][0]["content"], case["messages"][1]["content"]
    result = run_cli("run", "-m", str(MODELS / MODEL), "-s", system, "-t", user,
                     "--max-tokens", "24", "--json")
    assert json.loads(result.stdout)["text"] == case["text"]


def test_verbose_prints_ollama_style_statistics_on_stderr():
    result = run_cli("run", "-m", PHI3, "-t", "Hi", "--max-tokens", "5", "--verbose")
    assert result.returncode == 0
    for label in ("total duration:", "load duration:", "prompt eval count:", "prompt eval rate:",
                  "eval count:", "eval rate:"):
        assert label in result.stderr
    assert "eval count:           5 token(s)" in result.stderr


def test_eos_gives_finish_reason_stop():
    model, case = next((m, c) for m, c in expected_cases() if c["eos_reached"])
    args = []
    for message in case["messages"]:
        if message["role"] == "system":
            args += ["--system", message["content"]]
    if [m["role"] for m in case["messages"]] not in (["user"], ["system", "user"]):
        pytest.skip("needs a single-turn case")
    result = run_cli("run", "-m", str(MODELS / model), *args, "-t", case["messages"][-1]["content"],
                     "--max-tokens", "24", "--json")
    data = json.loads(result.stdout)
    assert data["finish_reason"] == "stop" and data["text"] == case["text"]


def test_root_help_stays_short_but_run_help_lists_every_option():
    root, run = run_cli("--help").stdout, run_cli("run", "--help").stdout
    assert "--task" in root and "--model" in root and "run --help" in root
    assert "--max-tokens" not in root and "--temperature" not in root
    assert "--max-tokens" in run and "--temperature" in run
