"""`onnx benchmark` and `onnx test` end to end on the tiny fixture models, through the CLI (in
process; the first test through the console script). Tiny iteration counts keep this to seconds;
no test asserts a timing."""

from __future__ import annotations

import csv
import io
import json

import pytest

from agentic_onnx.cli.bench_view import CSV_COLUMNS
from agentic_onnx.core.bench.runs import METRICS, SCHEMA

from .conftest import MODELS, run_cli, run_cli_process

INT4 = str(MODELS / "tiny-phi3-int4")
QWEN = str(MODELS / "tiny-qwen2-fp32")
STAT_KEYS = {"n", "mean", "std", "p50", "p95", "cv", "min", "max"}
QUICK = ("--iterations", "2", "--warmup", "1", "--threads", "1")


def benchmark(*args: str):
    return run_cli("onnx", "benchmark", *QUICK, *args)


def test_json_report_follows_the_documented_schema():
    result = run_cli_process("onnx", "benchmark", *QUICK, "-m", INT4, "--prompt-tokens", "8,40",
                             "--gen-tokens", "6", "--format", "json")  # its own process's memory
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress or notes when stderr is not a terminal
    report = json.loads(result.stdout)
    assert report["schema"] == SCHEMA
    assert set(report) == {"schema", "created", "machine", "settings", "thresholds", "runs",
                           "violations"}
    assert report["settings"] == {"prompt_tokens": [8, 40], "gen_tokens": [6], "iterations": 2,
                                  "warmup": 1, "threads": 1, "concurrency": [1],
                                  "sampling": "greedy"}
    assert report["machine"]["physical_cores"] >= 1 and report["machine"]["onnxruntime_genai"]
    [run] = report["runs"]
    assert (run["model"], run["execution_provider"], run["threads"]) == ("tiny-phi3-int4", "cpu", 1)
    assert run["load_s"] > 0 and run["peak_rss_bytes"] > 10 * 2**20
    assert run["gpu_memory_bytes"] is None and report["violations"] == []
    assert [t["test"] for t in run["tests"]] == ["pp8+tg6", "pp40+tg6"]
    for test in run["tests"]:
        assert test["iterations"] == 2 and test["generated_tokens_min"] == 6
        assert test["concurrency"] == 1 and test["requests"] == 2
        for metric in METRICS:
            assert set(test[metric]) == STAT_KEYS and test[metric]["n"] == 2
            assert len(test["samples"][metric]) == 2
            assert test[metric]["min"] <= test[metric]["p50"] <= test[metric]["max"]


def test_prompts_have_exactly_the_requested_length():
    """pp tokens/s is P / TTFT per sample: an identity that holds only if the prompt is P tokens."""
    result = benchmark("-m", INT4, "--prompt-tokens", "37", "--gen-tokens", "3", "--json")
    [test] = json.loads(result.stdout)["runs"][0]["tests"]
    for ttft_ms, prompt_tps, e2e_ms in zip(*(test["samples"][m] for m in ("ttft_ms", "prompt_tps", "e2e_ms"))):
        assert prompt_tps == pytest.approx(37 / (ttft_ms / 1000), rel=1e-3)
        assert e2e_ms >= ttft_ms


def test_csv_has_one_row_per_model_ep_and_test_with_the_documented_columns():
    result = benchmark("-m", INT4, "-m", QWEN, "--prompt-tokens", "8,16", "--gen-tokens", "4",
                       "--format", "csv")
    assert result.returncode == 0, result.stderr
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    rows = list(reader)
    assert [(r["model"], r["test"]) for r in rows] == [
        ("tiny-phi3-int4", "pp8+tg4"), ("tiny-phi3-int4", "pp16+tg4"),
        ("tiny-qwen2-fp32", "pp8+tg4"), ("tiny-qwen2-fp32", "pp16+tg4")]
    for row in rows:
        assert float(row["gen_tps_mean"]) > 0 and float(row["peak_rss_mib"]) > 10
        assert row["gpu_memory_mib"] == "" and row["iterations"] == "2"


def test_table_compares_several_models_side_by_side_with_a_bar_chart():
    result = benchmark("-m", INT4, "-m", QWEN, "--prompt-tokens", "8", "--gen-tokens", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "onnx benchmark" in out and "comparison" in out and "1.00x" in out
    assert "pp8+tg4: generation tokens/s" in out
    assert sum(1 for line in out.splitlines() if "█" in line or "#" in line) == 2


def test_output_file_receives_the_results_and_stdout_stays_empty(tmp_path):
    target = tmp_path / "bench.md"
    result = benchmark("-m", INT4, "--prompt-tokens", "8", "--gen-tokens", "4", "--format", "md",
                       "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    text = target.read_text(encoding="utf-8")
    assert "| tiny-phi3-int4 | cpu | pp8+tg4 |" in text and text.startswith("Machine: ")


@pytest.mark.parametrize(("limit", "metric"), [
    (("--min-gen-tps", "1e12"), "gen_tps"),
    (("--max-ttft-ms", "0.000001"), "ttft_ms"),
    (("--max-rss-mb", "1"), "peak_rss_mb"),
])
def test_a_violated_threshold_exits_6_after_writing_the_results(limit, metric):
    result = benchmark("-m", INT4, "--prompt-tokens", "8", "--gen-tokens", "4", "--json", *limit)
    assert result.returncode == 6
    report = json.loads(result.stdout)
    assert [v["metric"] for v in report["violations"]] == [metric]
    assert "threshold violated" in result.stderr and "\n" not in result.stderr.strip()


def test_thresholds_that_hold_exit_0():
    result = benchmark("-m", INT4, "--prompt-tokens", "8", "--gen-tokens", "4", "--json",
                       "--min-gen-tps", "0.001", "--max-ttft-ms", "1e9", "--max-rss-mb", "1e7")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["violations"] == []


def test_early_end_of_sequence_is_reported_and_rates_use_the_tokens_generated():
    # Greedy tiny-phi3-fp32 emits end-of-sequence after 22 tokens of the 64-token prompt.
    result = benchmark("-m", str(MODELS / "tiny-phi3-fp32"), "--prompt-tokens", "64",
                       "--gen-tokens", "40", "--json")
    assert result.returncode == 0, result.stderr
    [run] = json.loads(result.stdout)["runs"]
    assert run["tests"][0]["generated_tokens_min"] == 22
    assert "end-of-sequence after 22 tokens" in run["warnings"][0]
    assert "end-of-sequence" in result.stderr


@pytest.mark.parametrize(("args", "code", "words"), [
    (("--format", "xml"), 2, "--format"),
    (("-e", "tpu"), 2, "execution provider"),
    (("--prompt-tokens", "8,x"), 2, "--prompt-tokens"),
    (("--gen-tokens", "0"), 2, "--gen-tokens"),
    (("--prompt-tokens", "600"), 2, "context"),
    (("--gen-tokens", "1", "--min-gen-tps", "5"), 2, "--min-gen-tps"),
])
def test_bad_options_are_usage_errors(args, code, words):
    result = benchmark("-m", INT4, *args)
    assert result.returncode == code
    assert words in result.stderr and result.stdout == ""


def test_a_missing_model_fails_before_anything_is_measured(tmp_path):
    result = benchmark("-m", INT4, "-m", str(tmp_path / "nope"))
    assert result.returncode == 3
    assert "not found" in result.stderr and result.stdout == ""


def test_onnx_test_reports_a_working_model():
    result = run_cli("onnx", "test", "-m", INT4, "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["text"].strip()
    assert report["execution_provider"] == "cpu" and report["threads"] == 1
    assert report["load_s"] > 0 and report["ttft_ms"] > 0 and report["completion_tokens"] > 1
    human = run_cli("onnx", "test", "-m", INT4)
    assert human.returncode == 0 and "status" in human.stdout and "ok" in human.stdout


def test_onnx_test_fails_with_exit_3_when_the_model_answers_with_no_text(model_copy):
    folder = model_copy("tiny-phi3-int4")
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model"]["eos_token_id"] = list(range(config["model"]["vocab_size"]))  # any token ends it
    config_path.write_text(json.dumps(config), encoding="utf-8")
    result = run_cli("onnx", "test", "-m", str(folder), "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["ok"] is False
    assert "generated no text" in result.stderr


def test_onnx_test_of_a_missing_model_exits_3(tmp_path):
    result = run_cli("onnx", "test", "-m", str(tmp_path / "nothing"))
    assert result.returncode == 3 and "not found" in result.stderr
