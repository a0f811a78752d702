"""`onnx benchmark --concurrency`: N requests started at once on one loaded model, on the tiny
fixture models. Tiny sizes; no timing is asserted beyond sanity (positive, finite)."""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentic_onnx.core.bench.runs import METRICS, exact_prompt, measure_iteration

from .conftest import MODELS, run_cli

FP32 = str(MODELS / "tiny-phi3-fp32")
TINY = ("-m", FP32, "--prompt-tokens", "8", "--gen-tokens", "4", "--warmup", "0",
        "--threads", "1")


def test_each_concurrency_is_a_test_with_per_request_and_per_iteration_figures():
    result = run_cli("onnx", "benchmark", *TINY, "-n", "2", "--concurrency", "1,2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["concurrency"] == [1, 2]
    [run] = report["runs"]
    alone, together = run["tests"]
    assert (alone["test"], together["test"]) == ("pp8+tg4", "pp8+tg4@c2")
    for test, concurrency in ((alone, 1), (together, 2)):
        assert test["concurrency"] == concurrency and test["iterations"] == 2
        assert test["requests"] == 2 * concurrency  # every request of every iteration
        assert test["generated_tokens_min"] == 4
        for metric in METRICS:  # per request
            assert test[metric]["n"] == 2 * concurrency
            assert len(test["samples"][metric]) == 2 * concurrency
        for metric in ("aggregate_tps", "cpu_util"):  # per iteration
            assert test[metric]["n"] == 2 and len(test["samples"][metric]) == 2
            for value in test["samples"][metric]:
                assert value > 0 and math.isfinite(value)
        for value in test["samples"]["cpu_util"]:
            assert value <= 1.05


def test_concurrent_requests_generate_what_the_same_request_generates_alone():
    """Through the CLI: greedy tiny-phi3-fp32 ends at EOS after 22 tokens of a 64-token prompt,
    alone (test_bench.py) and in each of 4 concurrent requests."""
    result = run_cli("onnx", "benchmark", "-m", FP32, "--prompt-tokens", "64", "--gen-tokens",
                     "40", "-n", "1", "--warmup", "0", "--threads", "1", "--concurrency", "4",
                     "--json")
    assert result.returncode == 0, result.stderr
    [test] = json.loads(result.stdout)["runs"][0]["tests"]
    assert test["test"] == "pp64+tg40@c4" and test["requests"] == 4
    assert test["generated_tokens_min"] == 22


class RecordingModel:
    """A loaded model whose generate_tokens also keeps each request's token ids."""

    def __init__(self, loaded):
        self._loaded, self._lock, self.outputs = loaded, threading.Lock(), []

    def __getattr__(self, name):
        return getattr(self._loaded, name)

    def generate_tokens(self, prompt_ids, options):
        tokens = []
        for token in self._loaded.generate_tokens(prompt_ids, options):
            tokens.append(token)
            yield token
        with self._lock:
            self.outputs.append(tokens)


def bare_greedy(og_model, prompt_ids, gen_tokens):
    """The same request alone, through genai's own loop (none of our code)."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(og_model)
    params.set_search_options(max_length=len(prompt_ids) + gen_tokens, do_sample=False)
    generator = og.Generator(og_model, params)
    generator.append_tokens(list(prompt_ids))
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


@pytest.mark.parametrize(("model", "prompt_tokens", "gen_tokens"), [
    ("tiny-phi3-fp32", 64, 40), ("tiny-phi3-fp32", 8, 12), ("tiny-qwen2-fp32", 16, 12)])
def test_each_concurrent_request_equals_the_request_alone(model, prompt_tokens, gen_tokens):
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.resolve import resolve_model

    loaded = load_model(resolve_model(str(MODELS / model)), "cpu", 1)
    prompt_ids = exact_prompt(loaded.encode, prompt_tokens)
    expected = bare_greedy(loaded.og_model, prompt_ids, gen_tokens)
    assert expected
    recording = RecordingModel(loaded)
    with ThreadPoolExecutor(4) as pool:
        barrier = threading.Barrier(4)
        for _ in range(2):
            generated, samples, totals = measure_iteration(recording, prompt_ids, gen_tokens, 4,
                                                           pool, barrier)
            assert generated == [len(expected)] * 4 and len(samples) == 4
            assert set(totals) == {"aggregate_tps", "cpu_util"}
    assert len(recording.outputs) == 8
    for tokens in recording.outputs:
        assert tokens == expected
    assert loaded.tokenizer.decode(recording.outputs[0]) == loaded.tokenizer.decode(expected)


def test_table_and_markdown_show_the_concurrent_tests():
    table = run_cli("onnx", "benchmark", *TINY, "-n", "1", "--concurrency", "1,2")
    assert table.returncode == 0, table.stderr
    assert "pp8+tg4@c2" in table.stdout and "concurrent requests" in table.stdout
    assert "agg t/s" in table.stdout
    md = run_cli("onnx", "benchmark", *TINY, "-n", "1", "--concurrency", "2", "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| tiny-phi3-fp32 | cpu | pp8+tg4@c2 |" in md.stdout and "| agg t/s | CPU |" in md.stdout


@pytest.mark.parametrize("value", ["0", "-1", "x", "2,0"])
def test_an_invalid_concurrency_is_a_one_line_usage_error(value):
    result = run_cli("onnx", "benchmark", *TINY, "-n", "1", "--concurrency", value)
    assert result.returncode == 2
    assert "--concurrency" in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
