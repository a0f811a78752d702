"""Summary statistics of benchmark samples, defined once so every report means the same thing.

- `mean`: the arithmetic mean.
- `std`: the *sample* standard deviation (divides by n - 1, as llama-bench and `statistics.stdev`
  do); 0.0 for a single sample.
- `p50`, `p95`: percentiles by linear interpolation between the closest ranks, the method
  numpy calls "linear" (Hyndman & Fan type 7, Excel's PERCENTILE.INC): sort the n samples, take
  the fractional rank h = (n - 1) * q / 100 and interpolate between the samples at floor(h) and
  ceil(h). With one sample every percentile is that sample; p50 is the usual median.
- `cv`: the coefficient of variation, std / mean (0.0 when the mean is 0); a dimensionless
  measure of noise: 0.02 means the runs spread about 2% around their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    p50: float
    p95: float
    cv: float
    min: float
    max: float

    def to_json(self, digits: int = 4) -> dict[str, float | int]:
        return {key: (value if isinstance(value, int) else round(value, digits))
                for key, value in asdict(self).items()}


def mean(samples: Sequence[float]) -> float:
    _require(samples)
    return math.fsum(samples) / len(samples)


def std(samples: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator)."""
    _require(samples)
    if len(samples) < 2:
        return 0.0
    centre = mean(samples)
    return math.sqrt(math.fsum((x - centre) ** 2 for x in samples) / (len(samples) - 1))


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100), linear interpolation between closest ranks."""
    _require(samples)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def coefficient_of_variation(samples: Sequence[float]) -> float:
    centre = mean(samples)
    return 0.0 if centre == 0 else std(samples) / abs(centre)


def summarize(samples: Sequence[float]) -> Summary:
    return Summary(n=len(samples), mean=mean(samples), std=std(samples),
                   p50=percentile(samples, 50), p95=percentile(samples, 95),
                   cv=coefficient_of_variation(samples), min=min(samples), max=max(samples))


def _require(samples: Sequence[float]) -> None:
    if not samples:
        raise ValueError("no samples")
