"""`onnx test` and `onnx benchmark`: measured through the engine and `Response`, like `run`.

A benchmark runs every model x execution provider (a *run*) over every test `pp{P}+tg{G}`
(llama-bench's names): a prompt of exactly P tokens, then G generated tokens, greedy. Each
iteration is one `Response` over the engine's own decode loop (`LoadedModel.generate_tokens`,
the loop `run` streams from), so TTFT and tokens/s are computed by the one code that computes them
for `run`. Two differences from `run`, both deliberate: the prompt is token ids (no chat template,
so its length is exact), and every generated token counts as output even when it decodes to no
visible text, so TTFT is the time to the first *token*. Metrics per iteration:

- `ttft_ms`: request start to the first generated token (prompt processing + one decode step);
- `prompt_tps`: P / TTFT;  `gen_tps`: (generated - 1) / (time after the first token);
- `e2e_ms`: request start to the end of the stream.

With `--concurrency N` (N > 1) a test `pp{P}+tg{G}@c{N}` starts N such requests at once in each
iteration, on N threads sharing the loaded `og.Model` (each request has its own generator: genai
0.18 runs concurrent generators on one model correctly, with outputs equal to the same request
alone, so nothing serializes them). The four metrics above are then per request (N samples per
iteration). Two more are per iteration, for every N (N = 1 included; its requests run on the
calling thread exactly as before, the iteration merely timed around them):

- `aggregate_tps`: all requests' generated tokens / the iteration's wall time (first request
  started to last one finished);
- `cpu_util`: the process's CPU time (user + system, all threads) over the iteration / (wall time
  x logical cores): 1.0 means every logical core was busy for the whole iteration.

Each run loads its model fresh (the engine cache is cleared), so `load_s` is the model's own
cold-process load (the OS file cache may be warm) and peak RSS is measured per run on Linux
(`/proc/self/clear_refs` resets the high-water mark); elsewhere it is the process's peak so far.
Nothing is rendered while an iteration is timed: progress is reported between iterations.
"""

from __future__ import annotations

import gc
import importlib
import math
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agentic_onnx.core.bench import stats
from agentic_onnx.core.bench.memory import GpuMemoryProbe, PeakRss
from agentic_onnx.core.errors import ThresholdViolatedError, UsageError
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, Usage
from agentic_onnx.core.generation.options import GenerationOptions

SCHEMA = "agentic-onnx.benchmark/1"
METRICS = ("ttft_ms", "prompt_tps", "gen_tps", "e2e_ms")  # per request
ITERATION_METRICS = ("aggregate_tps", "cpu_util")  # per iteration (all its requests together)
MAX_CONCURRENCY = 256
# Neutral English text; its tokens are repeated to build prompts of an exact length.
PROMPT_SOURCE = (
    "The history of computing is a story of people who wanted to count, sort and predict faster "
    "than they could by hand. Early machines used gears and punched cards; later ones used "
    "valves, transistors and finally integrated circuits with billions of parts. Each step made "
    "the machines smaller, cheaper and more reliable, and each one changed what people expected "
    "a computer to do for them at work, at school and at home."
)
MIB = 1024 * 1024


@dataclass(frozen=True)
class BenchSettings:
    prompt_tokens: tuple[int, ...] = (64,)
    gen_tokens: tuple[int, ...] = (32,)
    iterations: int = 5
    warmup: int = 1
    threads: int | None = None
    concurrency: tuple[int, ...] = (1,)  # requests started at once per iteration
    device_id: int | None = None  # the GPU of a CUDA or DirectML run (--device-id)

    def tests(self) -> list[tuple[int, int, int]]:
        """(prompt tokens, generated tokens, concurrency) of every test, in report order."""
        return [(p, g, c) for p in self.prompt_tokens for g in self.gen_tokens
                for c in self.concurrency]

    def validate(self) -> None:
        if not self.prompt_tokens or min(self.prompt_tokens) < 1:
            raise UsageError("--prompt-tokens needs lengths of at least 1 token.")
        if not self.gen_tokens or min(self.gen_tokens) < 1:
            raise UsageError("--gen-tokens needs counts of at least 1 token.",
                             "Use --gen-tokens 1 to measure prompt processing only.")
        if self.iterations < 1 or self.warmup < 0:
            raise UsageError("--iterations must be at least 1 and --warmup at least 0.")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise UsageError(f"Invalid value for --threads: {self.threads} is not between 1 and 1024.")
        if not self.concurrency:
            raise UsageError("--concurrency is empty.", "Example: --concurrency 1,2,4")
        for count in self.concurrency:
            if not 1 <= count <= MAX_CONCURRENCY:
                raise UsageError(f"Invalid value for --concurrency: {count} is not between 1 and "
                                 f"{MAX_CONCURRENCY}.", "Example: --concurrency 1,2,4")


@dataclass(frozen=True)
class Thresholds:
    """CI limits, compared with the mean over the measured iterations (RSS: the run's peak)."""

    min_gen_tps: float | None = None
    max_ttft_ms: float | None = None
    max_rss_mb: float | None = None  # MiB (2**20 bytes)

    def to_json(self) -> dict[str, float | None]:
        return {"min_gen_tps": self.min_gen_tps, "max_ttft_ms": self.max_ttft_ms,
                "max_rss_mb": self.max_rss_mb}


@dataclass
class BenchTestResult:
    prompt_tokens: int
    gen_tokens: int
    generated: list[int] = field(default_factory=list)  # tokens generated, per request
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {m: [] for m in METRICS + ITERATION_METRICS})
    concurrency: int = 1  # requests started at once in each iteration

    @property
    def name(self) -> str:
        base = f"pp{self.prompt_tokens}+tg{self.gen_tokens}"
        return base if self.concurrency == 1 else f"{base}@c{self.concurrency}"

    @property
    def iterations(self) -> int:
        return len(self.generated) // self.concurrency

    def summary(self, metric: str) -> stats.Summary | None:
        values = self.samples.get(metric)
        return stats.summarize(values) if values else None

    def to_json(self) -> dict[str, Any]:
        metrics = METRICS + ITERATION_METRICS
        return {
            "test": self.name, "prompt_tokens": self.prompt_tokens, "gen_tokens": self.gen_tokens,
            "concurrency": self.concurrency, "iterations": self.iterations,
            "requests": len(self.generated),
            "generated_tokens_min": min(self.generated, default=0),
            **{m: (s.to_json() if (s := self.summary(m)) else None) for m in metrics},
            "samples": {m: [round(v, 4) for v in self.samples.get(m, [])] for m in metrics},
        }


@dataclass
class RunResult:
    """One model on one execution provider."""

    model: str
    model_path: str
    execution_provider: str
    threads: int
    load_s: float
    tests: list[BenchTestResult] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    peak_rss_scope: str = "run"  # "run" (reset before loading) or "process" (lifetime peak)
    gpu_memory_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} [{self.execution_provider}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "model_path": self.model_path,
            "execution_provider": self.execution_provider, "threads": self.threads,
            "load_s": round(self.load_s, 4), "peak_rss_bytes": self.peak_rss_bytes,
            "peak_rss_scope": self.peak_rss_scope, "gpu_memory_bytes": self.gpu_memory_bytes,
            "warnings": self.warnings, "tests": [t.to_json() for t in self.tests],
        }


@dataclass(frozen=True)
class Violation:
    model: str
    execution_provider: str
    test: str | None  # None for per-run limits (RSS)
    metric: str
    limit: float
    value: float

    def describe(self) -> str:
        where = f"{self.model} [{self.execution_provider}]" + (f" {self.test}" if self.test else "")
        relation = "<" if self.metric == "gen_tps" else ">"
        return f"{where}: {self.metric} {self.value:.2f} {relation} limit {self.limit:g}"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "execution_provider": self.execution_provider,
                "test": self.test, "metric": self.metric, "limit": self.limit,
                "value": round(self.value, 4)}


@dataclass
class BenchmarkReport:
    settings: BenchSettings
    thresholds: Thresholds
    machine: dict[str, Any]
    runs: list[RunResult]
    violations: list[Violation]
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "created": self.created, "machine": self.machine,
            "settings": {"prompt_tokens": list(self.settings.prompt_tokens),
                         "gen_tokens": list(self.settings.gen_tokens),
                         "iterations": self.settings.iterations, "warmup": self.settings.warmup,
                         "threads": self.settings.threads,
                         "concurrency": list(self.settings.concurrency), "sampling": "greedy"},
            "thresholds": self.thresholds.to_json(),
            "runs": [run.to_json() for run in self.runs],
            "violations": [v.to_json() for v in self.violations],
        }

    def violation_error(self) -> ThresholdViolatedError | None:
        """The error that ends a run whose thresholds were missed (None when all held)."""
        if not self.violations:
            return None
        count = len(self.violations)
        return ThresholdViolatedError(
            f"{count} benchmark threshold{'s' if count > 1 else ''} violated: "
            + "; ".join(v.describe() for v in self.violations) + ".",
            "The full results are in the report; fix the regression or adjust the limit.")


@dataclass(frozen=True)
class BenchProgress:
    """Reported between iterations (never while one is timed)."""

    run: str  # "model [ep]"
    phase: str  # "load", "warmup", "measure", "done"
    test: str | None
    step: int  # steps finished in the whole benchmark
    total: int


ProgressCallback = Callable[[BenchProgress], None]


def exact_prompt(encode: Callable[[str], list[int]], length: int) -> list[int]:
    """`length` token ids: PROMPT_SOURCE tokenized by the model's tokenizer, repeated and cut."""
    base = encode(PROMPT_SOURCE)
    if not base:
        raise UsageError("The model's tokenizer turned the benchmark text into no tokens.")
    return (base * math.ceil(length / len(base)))[:length]


def token_events(loaded: Any, prompt_ids: Sequence[int], gen_tokens: int) -> Iterator[StreamEvent]:
    """The engine's decode loop as a stream where every token is output (see the module doc)."""
    decoder = loaded.tokenizer.create_stream()
    generated = 0
    for token in loaded.generate_tokens(prompt_ids, GenerationOptions(max_tokens=gen_tokens)):
        generated += 1
        yield TextDelta(decoder.decode(token))
    yield Usage(prompt_tokens=len(prompt_ids), completion_tokens=generated)
    yield Finish("length" if generated >= gen_tokens else "stop")


def measure_once(loaded: Any, prompt_ids: Sequence[int], gen_tokens: int) -> tuple[int, dict[str, float | None]]:
    from agentic_onnx.core.generation.response import Response

    response = Response(token_events(loaded, prompt_ids, gen_tokens), provider="onnx",
                        model=loaded.folder.name, execution_provider=loaded.execution_provider)
    response.consume()
    timings = response.timings
    return (response.usage.completion_tokens if response.usage else 0), {
        "ttft_ms": timings.ttft_ms, "prompt_tps": timings.prompt_tokens_per_s,
        "gen_tps": timings.decode_tokens_per_s, "e2e_ms": timings.total_s * 1000.0,
    }


def measure_iteration(loaded: Any, prompt_ids: Sequence[int], gen_tokens: int, concurrency: int,
                      pool: Any = None, barrier: threading.Barrier | None = None,
                      ) -> tuple[list[int], list[dict[str, float | None]], dict[str, float]]:
    """One iteration: `concurrency` requests started at once; per request (tokens generated,
    metrics) and the iteration's own metrics (ITERATION_METRICS). One request runs on the
    calling thread exactly as `measure_once`; several run on `pool`'s threads (a
    ThreadPoolExecutor with at least `concurrency` workers), released together by `barrier`."""
    wall, cpu = time.perf_counter(), time.process_time()
    if concurrency == 1:
        outcomes = [measure_once(loaded, prompt_ids, gen_tokens)]
    else:
        def request() -> tuple[int, dict[str, float | None]]:
            if barrier is not None:
                barrier.wait()
            return measure_once(loaded, prompt_ids, gen_tokens)

        futures = [pool.submit(request) for _ in range(concurrency)]
        outcomes = [future.result() for future in futures]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    generated = [tokens for tokens, _ in outcomes]
    return generated, [sample for _, sample in outcomes], {
        "aggregate_tps": sum(generated) / wall if wall > 0 else 0.0,
        "cpu_util": cpu / (wall * logical_cores()) if wall > 0 else 0.0,
    }


def logical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=True) or 1


def run_benchmark(model_specs: Sequence[str], execution_providers: Sequence[str],
                  settings: BenchSettings, thresholds: Thresholds = Thresholds(),
                  on_progress: ProgressCallback | None = None) -> BenchmarkReport:
    """Measure every model x EP x test. Models are resolved first, so a typo fails at once."""
    from agentic_onnx.core.models.resolve import resolve_model

    settings.validate()
    if thresholds.min_gen_tps is not None and max(settings.gen_tokens) < 2:
        raise UsageError("--min-gen-tps needs a test that generates at least 2 tokens.",
                         "Raise --gen-tokens.")
    folders = [resolve_model(spec) for spec in model_specs]
    for folder in folders:
        _check_context(folder, settings)
    pairs = [(folder, ep) for folder in folders for ep in execution_providers]
    per_run = 1 + len(settings.tests()) * (settings.warmup + settings.iterations)
    counter = _Counter(len(pairs) * per_run, on_progress)
    runs = [_run_one(folder, ep, settings, counter) for folder, ep in pairs]
    return BenchmarkReport(
        settings=settings, thresholds=thresholds,
        machine=machine_description(any(run.execution_provider == "cuda" for run in runs)),
        runs=runs, violations=check_thresholds(runs, thresholds),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _check_context(folder: Any, settings: BenchSettings) -> None:
    longest = max(settings.prompt_tokens) + max(settings.gen_tokens)  # per request, at any N
    if longest > folder.context_length:
        raise UsageError(
            f"pp{max(settings.prompt_tokens)}+tg{max(settings.gen_tokens)} needs {longest} tokens "
            f"but {folder.name}'s context holds {folder.context_length}.",
            "Lower --prompt-tokens or --gen-tokens.")


class _Counter:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total, self.done, self._callback = total, 0, callback

    def report(self, run: str, phase: str, test: str | None, advance: int = 1) -> None:
        self.done += advance
        if self._callback:
            self._callback(BenchProgress(run, phase, test, self.done, self.total))


def _run_one(folder: Any, execution_provider: str, settings: BenchSettings, counter: _Counter) -> RunResult:
    from agentic_onnx.core.generation.engine import clear_model_cache, load_model

    clear_model_cache()
    gc.collect()
    rss = PeakRss()
    counter.report(f"{folder.name} [{execution_provider}]", "load", None, advance=0)
    # --device-id picks the GPU of the GPU runs; `-e cpu,cuda --device-id 1` still measures the CPU.
    device_id = None if execution_provider == "cpu" else settings.device_id
    loaded = load_model(folder, execution_provider, settings.threads, device_id=device_id)
    run = RunResult(model=folder.name, model_path=str(folder.path),
                    execution_provider=loaded.execution_provider, threads=loaded.threads,
                    load_s=loaded.load_s, peak_rss_scope=rss.scope, warnings=list(loaded.warnings))
    gpu = GpuMemoryProbe(loaded.device_id or 0) if loaded.execution_provider == "cuda" else None
    if gpu:
        gpu.sample()
    counter.report(run.label, "load", None)
    for prompt_tokens, gen_tokens, concurrency in settings.tests():
        run.tests.append(_run_test(loaded, run, prompt_tokens, gen_tokens, concurrency, settings,
                                   counter, gpu))
    run.peak_rss_bytes = rss.peak_bytes()
    if gpu:
        run.gpu_memory_bytes = gpu.close()
    counter.report(run.label, "done", None, advance=0)
    del loaded
    clear_model_cache()
    gc.collect()
    return run


def _run_test(loaded: Any, run: RunResult, prompt_tokens: int, gen_tokens: int, concurrency: int,
              settings: BenchSettings, counter: _Counter, gpu: GpuMemoryProbe | None) -> BenchTestResult:
    from concurrent.futures import ThreadPoolExecutor

    result = BenchTestResult(prompt_tokens, gen_tokens, concurrency=concurrency)
    prompt_ids = exact_prompt(loaded.encode, prompt_tokens)
    importlib.import_module("agentic_onnx.core.generation.response")  # not inside the first timing
    # Threads made once per test, before any timing (each waits at the barrier, so the pool has
    # to start all of them); none at all for one request at a time.
    pool = ThreadPoolExecutor(concurrency, "bench-request") if concurrency > 1 else None
    barrier = threading.Barrier(concurrency) if concurrency > 1 else None
    try:
        if pool is not None:
            for started in [pool.submit(barrier.wait) for _ in range(concurrency)]:
                started.result()
        for index in range(settings.warmup + settings.iterations):
            generated, samples, totals = measure_iteration(loaded, prompt_ids, gen_tokens,
                                                           concurrency, pool, barrier)
            if gpu:
                gpu.sample()
            warm = index < settings.warmup
            counter.report(run.label, "warmup" if warm else "measure", result.name)
            if warm:
                continue
            result.generated.extend(generated)
            for sample in samples:
                for metric, value in sample.items():
                    if value is not None:
                        result.samples[metric].append(value)
            for metric, value in totals.items():
                result.samples[metric].append(value)
    finally:
        if pool is not None:
            pool.shutdown()
    if min(result.generated) < gen_tokens:
        run.warnings.append(f"{result.name}: the model stopped at end-of-sequence after "
                            f"{min(result.generated)} tokens; rates use the tokens generated.")
    return result


def check_thresholds(runs: Sequence[RunResult], thresholds: Thresholds) -> list[Violation]:
    violations = []
    for run in runs:
        for test in run.tests:
            gen, ttft = test.summary("gen_tps"), test.summary("ttft_ms")
            if thresholds.min_gen_tps is not None and gen and gen.mean < thresholds.min_gen_tps:
                violations.append(Violation(run.model, run.execution_provider, test.name,
                                            "gen_tps", thresholds.min_gen_tps, gen.mean))
            if thresholds.max_ttft_ms is not None and ttft and ttft.mean > thresholds.max_ttft_ms:
                violations.append(Violation(run.model, run.execution_provider, test.name,
                                            "ttft_ms", thresholds.max_ttft_ms, ttft.mean))
        rss_mib = (run.peak_rss_bytes or 0) / MIB
        if thresholds.max_rss_mb is not None and rss_mib > thresholds.max_rss_mb:
            violations.append(Violation(run.model, run.execution_provider, None, "peak_rss_mb",
                                        thresholds.max_rss_mb, rss_mib))
    return violations


def machine_description(with_gpus: bool = False) -> dict[str, Any]:
    """What the numbers were measured on (CPU, memory, OS, package versions, GPUs if used)."""
    from agentic_onnx.core.machine.hardware import package_versions, probe_cpu, probe_gpus, probe_memory

    cpu, memory = probe_cpu(), probe_memory()
    versions = package_versions()
    machine: dict[str, Any] = {
        "cpu": cpu.brand, "arch": cpu.arch, "physical_cores": cpu.physical_cores,
        "logical_cores": cpu.logical_cores, "usable_cores": cpu.usable_cores, "simd": cpu.simd,
        "memory_bytes": memory.total_bytes, "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime_genai": next((versions[k] for k in ("onnxruntime-genai", "onnxruntime-genai-cuda",
                                                         "onnxruntime-genai-directml") if k in versions), None),
        "agentic_onnx": versions.get("agentic-onnx"),
    }
    if with_gpus:
        gpus, _ = probe_gpus()
        machine["gpus"] = [{"name": g.name, "memory_bytes": g.memory_total_bytes,
                            "driver": g.driver_version} for g in gpus]
    return machine


@dataclass
class SmokeTestResult:
    """`onnx test`: one short generation from a fixed prompt."""

    model: str
    model_path: str
    execution_provider: str
    threads: int
    load_s: float
    ttft_ms: float | None
    decode_tokens_per_s: float | None
    completion_tokens: int
    text: str
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.text.strip())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "model": self.model, "model_path": self.model_path,
                "execution_provider": self.execution_provider, "threads": self.threads,
                "load_s": round(self.load_s, 4),
                "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
                "decode_tokens_per_s": (None if self.decode_tokens_per_s is None
                                        else round(self.decode_tokens_per_s, 2)),
                "completion_tokens": self.completion_tokens, "text": self.text,
                "warnings": self.warnings}


SMOKE_PROMPT = "Say hello and name one colour of the rainbow."
SMOKE_MAX_TOKENS = 32


def smoke_test(model_spec: str | None, execution_provider: str = "auto",
               threads: int | None = None, device_id: int | None = None) -> SmokeTestResult:
    """Load the model and generate from a fixed chat prompt, exactly as `run` does."""
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.resolve import resolve_model
    from agentic_onnx.core.generation.response import Response

    from agentic_onnx.core.generation.local import LocalGeneration

    folder = resolve_model(model_spec)
    loaded = load_model(folder, execution_provider, threads, device_id=device_id)
    response = Response(LocalGeneration(loaded, keep_prefix=False).stream(smoke_request()),
                        provider="onnx", model=folder.name,
                        execution_provider=loaded.execution_provider, load_s=loaded.load_s)
    return smoke_result(response.consume(), str(folder.path), loaded.threads, loaded.warnings)


def smoke_request(model: str | None = None) -> Any:
    """The fixed request of `onnx test` (a core ChatRequest)."""
    from agentic_onnx.core.generation.request import ChatRequest

    return ChatRequest.of([{"role": "user", "content": SMOKE_PROMPT}], model=model,
                          options=GenerationOptions(max_tokens=SMOKE_MAX_TOKENS))


def smoke_result(response: Any, model_path: str, threads: int,
                 warnings: Sequence[str] = ()) -> SmokeTestResult:
    """`onnx test`'s result from the finished Response of `smoke_request`."""
    timings = response.timings
    return SmokeTestResult(response.model, model_path, response.execution_provider or "",
                           threads, response.load_s, timings.ttft_ms, timings.decode_tokens_per_s,
                           response.usage.completion_tokens if response.usage else 0,
                           response.text, list(warnings))
