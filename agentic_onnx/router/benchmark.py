"""`router benchmark`: the same task sent N times to each provider, through the same path as
`run` (route_and_stream, one Response per request), so the numbers mean what `run` measures.

Each provider is pinned (no fallback; its own retries still apply, as in real use). Requests
are logged to the usage database as command `benchmark`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.router.execute import route_and_stream
from agentic_onnx.router.rules import RouteFlags


@dataclass
class Sample:
    ok: bool
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    latency_ms: float | None = None
    tokens: int = 0
    cost_usd: float | None = None
    error: str | None = None


@dataclass
class ProviderResult:
    provider: str
    spec_model: str | None  # as given (`onnx:./folder`), sent with every request
    model: str | None = None  # as the provider reports it (the folder name, a dated id)
    samples: list[Sample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        ok = [sample for sample in self.samples if sample.ok]
        latencies = [s.latency_ms for s in ok if s.latency_ms is not None]
        return {
            "provider": self.provider, "model": self.model or self.spec_model, "iterations": len(self.samples),
            "success_rate": round(len(ok) / len(self.samples), 4) if self.samples else 0.0,
            "ttft_ms_p50": _round(percentile(_present([s.ttft_ms for s in ok]), 50)),
            "tokens_per_s_p50": _round(percentile(_present([s.tokens_per_s for s in ok]), 50)),
            "latency_ms_p50": _round(percentile(latencies, 50)),
            "latency_ms_p95": _round(percentile(latencies, 95)),
            "cost_per_million_tokens_usd": _cost_per_million(ok),
            "errors": sorted({s.error for s in self.samples if s.error}),
        }


def percentile(values: list[float], pct: float) -> float | None:
    """core.bench.stats.percentile (one definition for every report: linear interpolation between
    closest ranks, so p50 <= p95 always holds); None for no samples."""
    from agentic_onnx.core.bench.stats import percentile as interpolated

    return interpolated(values, pct) if values else None


def run_benchmark(specs: list[str], task: str, iterations: int, options: GenerationOptions, *,
                  config_path: str | None = None, resolve_local: Callable[[str], Any] | None = None,
                  on_notice: Callable[[str], None] | None = None,
                  on_progress: Callable[[str, int], None] | None = None) -> list[ProviderResult]:
    """Benchmark each `provider` or `provider:model` in `specs`."""
    results = []
    for spec in specs:
        name, _, model = spec.partition(":")
        result = ProviderResult(name.strip(), model.strip() or None)
        for iteration in range(iterations):
            if on_progress:
                on_progress(result.provider, iteration + 1)
            result.samples.append(_one(result, task, options, config_path, resolve_local,
                                       on_notice))
        results.append(result)
    return results


def all_failed_error(results: list[ProviderResult]) -> AgenticError | None:
    """The error a benchmark ends with when every request of some provider failed or was
    refused (a script must not read a table of blanks as success); None otherwise."""
    from agentic_onnx.router.errors import ProviderError

    dead = [result for result in results
            if result.samples and not any(sample.ok for sample in result.samples)]
    if not dead:
        return None
    described = "; ".join(f"{result.provider}: {result.samples[-1].error}" for result in dead)
    return ProviderError("router", f"Every request failed for {len(dead)} provider"
                         f"{'s' if len(dead) > 1 else ''} ({described}).",
                         "Fix the first error and run the benchmark again.")


def _one(result: ProviderResult, task: str, options: GenerationOptions, config_path: str | None,
         resolve_local: Callable[[str], Any] | None,
         on_notice: Callable[[str], None] | None) -> Sample:
    flags = RouteFlags(provider=result.provider, model=result.spec_model)
    try:
        request = ChatRequest.of([{"role": "user", "content": task}], options=options)
        routed = route_and_stream(request, flags, config_path=config_path,
                                  resolve_local=resolve_local, on_notice=on_notice,
                                  command="benchmark", fallback=False)
        response = routed.response.consume()  # type: ignore[union-attr]
    except AgenticError as error:
        return Sample(ok=False, error=error.message)
    result.model = response.model or result.model
    timings, usage = response.timings, response.usage
    return Sample(ok=True, ttft_ms=timings.ttft_ms, tokens_per_s=timings.decode_tokens_per_s,
                  latency_ms=timings.total_s * 1000,
                  tokens=(usage.prompt_tokens + usage.completion_tokens) if usage else 0,
                  cost_usd=response.cost_usd)


def _present(values: list[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _cost_per_million(samples: list[Sample]) -> float | None:
    if not samples or any(sample.cost_usd is None for sample in samples):
        return None
    tokens = sum(sample.tokens for sample in samples)
    cost = sum(sample.cost_usd or 0.0 for sample in samples)
    return round(cost / tokens * 1_000_000, 4) if tokens else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
