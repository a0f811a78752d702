"""Statistics of benchmark samples: known inputs, known answers (docs/benchmark.md)."""

from __future__ import annotations

import math
import statistics

import pytest

from agentic_onnx.core.bench import stats


def test_mean_and_sample_std_of_known_values():
    samples = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert stats.mean(samples) == 5.0
    # Sum of squared deviations is 32; the sample std divides by n - 1 = 7.
    assert stats.std(samples) == pytest.approx(math.sqrt(32 / 7))
    assert stats.std(samples) == pytest.approx(statistics.stdev(samples))


def test_percentiles_interpolate_linearly_between_closest_ranks():
    samples = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert stats.percentile(samples, 50) == 2.5
    assert stats.percentile(samples, 95) == pytest.approx(3.85)  # rank 2.85: 3 + 0.85 * (4 - 3)
    assert stats.percentile(samples, 0) == 1.0
    assert stats.percentile(samples, 100) == 4.0
    assert stats.percentile([10.0, 20.0, 30.0, 40.0, 50.0], 95) == pytest.approx(48.0)


def test_p50_is_the_median_for_odd_and_even_counts():
    for samples in ([5.0, 1.0, 3.0], [8.0, 1.0, 3.0, 100.0], [7.0]):
        assert stats.percentile(samples, 50) == statistics.median(samples)


def test_single_sample_has_zero_spread_and_every_percentile_equal_to_it():
    summary = stats.summarize([12.5])
    assert (summary.n, summary.mean, summary.std, summary.cv) == (1, 12.5, 0.0, 0.0)
    assert summary.p50 == summary.p95 == summary.min == summary.max == 12.5


def test_coefficient_of_variation_is_std_over_mean():
    samples = [90.0, 100.0, 110.0]
    assert stats.coefficient_of_variation(samples) == pytest.approx(10.0 / 100.0)
    assert stats.coefficient_of_variation([0.0, 0.0]) == 0.0


def test_summary_json_rounds_floats_and_keeps_the_count():
    summary = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert summary.to_json() == {"n": 4, "mean": 2.5, "std": 1.291, "p50": 2.5, "p95": 3.85,
                                 "cv": 0.5164, "min": 1.0, "max": 4.0}


@pytest.mark.parametrize("bad", [[], ()])
def test_no_samples_is_an_error_not_a_zero(bad):
    with pytest.raises(ValueError):
        stats.summarize(bad)


def test_percentile_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)
