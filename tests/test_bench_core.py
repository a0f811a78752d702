"""The benchmark core without the CLI: exact prompts, thresholds, per-run peak RSS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentic_onnx.core.bench.runs import (
    PROMPT_SOURCE,
    BenchSettings,
    BenchTestResult,
    RunResult,
    Thresholds,
    check_thresholds,
    exact_prompt,
)
from agentic_onnx.core.bench.memory import PeakRss
from agentic_onnx.core.errors import ExitCode, ThresholdViolatedError, UsageError


def fake_encode(text: str) -> list[int]:
    return [len(word) for word in text.split()]


@pytest.mark.parametrize("length", [1, 5, 60, 61, 500])
def test_exact_prompt_has_the_length_and_repeats_the_source_tokens(length):
    base = fake_encode(PROMPT_SOURCE)
    ids = exact_prompt(fake_encode, length)
    assert len(ids) == length
    assert ids == [base[i % len(base)] for i in range(length)]
    assert exact_prompt(fake_encode, length) == ids  # deterministic


def test_exact_prompt_refuses_a_tokenizer_that_yields_nothing():
    with pytest.raises(UsageError):
        exact_prompt(lambda text: [], 8)


def run_with(gen_tps: list[float], ttft_ms: list[float], rss_mib: float) -> RunResult:
    test = BenchTestResult(prompt_tokens=8, gen_tokens=4, generated=[4] * len(gen_tps))
    test.samples["gen_tps"], test.samples["ttft_ms"] = gen_tps, ttft_ms
    return RunResult("m", "/m", "cpu", 2, 0.5, tests=[test], peak_rss_bytes=int(rss_mib * 2**20))


def test_thresholds_compare_the_mean_and_the_run_peak():
    run = run_with(gen_tps=[10.0, 30.0], ttft_ms=[100.0, 300.0], rss_mib=512)
    assert check_thresholds([run], Thresholds(min_gen_tps=20, max_ttft_ms=200, max_rss_mb=512)) == []
    violations = check_thresholds([run], Thresholds(min_gen_tps=20.5, max_ttft_ms=199, max_rss_mb=511))
    assert [(v.metric, v.limit, v.value) for v in violations] == [
        ("gen_tps", 20.5, 20.0), ("ttft_ms", 199, 200.0), ("peak_rss_mb", 511, 512.0)]
    assert violations[0].describe() == "m [cpu] pp8+tg4: gen_tps 20.00 < limit 20.5"


def test_no_thresholds_means_no_violations():
    assert check_thresholds([run_with([1.0], [1e6], 1e6)], Thresholds()) == []


def test_threshold_error_maps_to_exit_code_6():
    assert ThresholdViolatedError.exit_code == ExitCode.THRESHOLD_VIOLATED == 6


@pytest.mark.parametrize("settings", [
    BenchSettings(prompt_tokens=()), BenchSettings(prompt_tokens=(0,)), BenchSettings(gen_tokens=(0,)),
    BenchSettings(iterations=0), BenchSettings(warmup=-1), BenchSettings(threads=0),
    BenchSettings(concurrency=()), BenchSettings(concurrency=(0,)), BenchSettings(concurrency=(2, -1)),
    BenchSettings(concurrency=(257,)),
])
def test_invalid_settings_are_usage_errors(settings):
    with pytest.raises(UsageError):
        settings.validate()


def test_tests_are_every_prompt_length_with_every_generation_length():
    assert BenchSettings(prompt_tokens=(8, 64), gen_tokens=(1, 32)).tests() == [
        (8, 1, 1), (8, 32, 1), (64, 1, 1), (64, 32, 1)]


def test_each_concurrency_is_a_test_named_with_its_level_above_one():
    assert BenchSettings(prompt_tokens=(8,), gen_tokens=(4,), concurrency=(1, 2, 4)).tests() == [
        (8, 4, 1), (8, 4, 2), (8, 4, 4)]
    assert BenchTestResult(8, 4).name == "pp8+tg4"
    assert BenchTestResult(8, 4, concurrency=1).name == "pp8+tg4"
    test = BenchTestResult(8, 4, generated=[4] * 6, concurrency=3)
    assert test.name == "pp8+tg4@c3" and test.iterations == 2
    assert test.to_json()["requests"] == 6 and test.to_json()["concurrency"] == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-run peak needs /proc")
def test_peak_rss_is_reset_per_run():
    before = bytearray(200 * 2**20)
    before[::4096] = b"x" * len(before[::4096])  # touch every page
    del before
    probe = PeakRss()
    assert probe.scope == "run"
    quiet = probe.peak_bytes()
    block = bytearray(64 * 2**20)
    block[::4096] = b"y" * len(block[::4096])
    busy = probe.peak_bytes()
    del block
    assert busy - quiet >= 60 * 2**20
    # the earlier peak, 200 MiB above what the process holds now, was forgotten (relative to the
    # process's own size: the suite may have loaded torch into it by now)
    assert quiet < _resident_bytes() + 100 * 2**20


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
