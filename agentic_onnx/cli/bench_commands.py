"""`agentic-onnx onnx test` and `agentic-onnx onnx benchmark`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import (
    DeviceIdOpt,
    ExecutionProviderOpt,
    JsonOpt,
    ModelOpt,
    NoServiceOpt,
    ThreadsOpt,
)

FORMATS = ("table", "json", "csv", "md")


def test_command(
    model: ModelOpt = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    device_id: DeviceIdOpt = None,
    no_service: NoServiceOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Load a model and generate from a fixed short prompt: a quick check that it works.

    Reports the execution provider, load time, TTFT and tokens/s. Exit codes: 0 the model
    answered with text; 3 the model is missing, invalid or answered with no text; 5 the
    execution provider is unavailable; 1 onnxruntime-genai failed to load or generate.
    """
    from agentic_onnx.cli import bench_view
    from agentic_onnx.cli.output import current
    from agentic_onnx.core.bench.runs import smoke_test
    from agentic_onnx.core.errors import ModelTestFailedError

    from agentic_onnx.router.local_settings import local_settings

    out = current()
    from agentic_onnx.router.service import service_for

    state = service_for(not no_service, execution_provider, threads, device_id)
    if state is not None:
        from agentic_onnx.router.providers.service import smoke_test_via

        result = smoke_test_via(state, model)
    else:
        settings = local_settings(execution_provider, threads, on_notice=out.warning,
                                  device_id=device_id)
        result = smoke_test(model, settings.execution_provider, settings.threads,
                            settings.device_id)
    for message in result.warnings:
        out.warning(message)
    failure = None if result.ok else ModelTestFailedError(
        f"{result.model} loaded but generated no text ({result.completion_tokens} token(s)).",
        "The model files may be damaged or not an instruction-tuned model: download it again.")
    # With --json and a failure: one JSON object, the result inside the error.
    out.result(result.to_json(), lambda out, _: bench_view.render_smoke_test(out, result),
               failure=failure)


def benchmark_command(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", metavar="MODEL", help="Model to measure (repeatable): a path to an onnxruntime-genai model folder.")] = None,
    execution_provider: Annotated[str, typer.Option("--execution-provider", "-e", "--provider", metavar="EP[,EP]", help="Comma-separated EPs to measure each model on: auto | cpu | cuda | dml | webgpu. `--provider` is the seed's spelling of the same option.")] = "auto",
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", metavar="N[,N]", help="Prompt lengths in tokens, comma-separated.")] = "64",
    gen_tokens: Annotated[str, typer.Option("--gen-tokens", metavar="N[,N]", help="Tokens to generate, comma-separated (1 measures the prompt only).")] = "32",
    iterations: Annotated[int, typer.Option("--iterations", "-n", metavar="N", help="Measured iterations per test.")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", help="Unmeasured iterations before them.")] = 1,
    threads: ThreadsOpt = None,
    device_id: DeviceIdOpt = None,
    concurrency: Annotated[str, typer.Option("--concurrency", metavar="N[,N]", help="Requests started at once per iteration on the one loaded model, comma-separated; N > 1 adds the test pp{P}+tg{G}@c{N}.")] = "1",
    output_format: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table | json | csv | md.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the results to FILE instead of stdout.")] = None,
    min_gen_tps: Annotated[Optional[float], typer.Option("--min-gen-tps", metavar="X", help="Exit 6 if any test's mean generation rate is below X tokens/s.")] = None,
    max_ttft_ms: Annotated[Optional[float], typer.Option("--max-ttft-ms", metavar="Y", help="Exit 6 if any test's mean TTFT is above Y ms.")] = None,
    max_rss_mb: Annotated[Optional[float], typer.Option("--max-rss-mb", metavar="Z", help="Exit 6 if a run's peak RSS is above Z MiB.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Measure load time, TTFT, prompt and generation tokens/s, latency and memory.

    Every model x EP runs the tests pp{P}+tg{G} (a prompt of exactly P tokens, then G generated
    tokens, greedy) for --iterations after --warmup; with --concurrency N each iteration starts N
    such requests at once (test pp{P}+tg{G}@c{N}). Per iteration: aggregate tokens/s and CPU
    utilisation. Statistics, JSON and CSV schemas: docs/benchmark.md. Exit 6 when a threshold is violated (the results are still written).
    """
    from agentic_onnx.cli import bench_view
    from agentic_onnx.cli.output import current
    from agentic_onnx.core.bench.runs import BenchSettings, Thresholds, run_benchmark
    from agentic_onnx.core.errors import UsageError

    out = current()
    fmt = "json" if out.json else output_format.lower()  # --json is --format json
    if fmt not in FORMATS:
        raise UsageError(f"Unknown --format {output_format!r}.", f"Use one of: {', '.join(FORMATS)}.")
    if not model:
        raise UsageError("No model given.", "Pass --model with a model folder (repeatable).")
    from agentic_onnx.router.local_settings import local_settings

    # The config's local EP and threads, as `run` loads with (-e/--threads win).
    local = local_settings("auto", threads, on_notice=out.warning)
    if execution_provider == "auto":
        execution_provider = local.execution_provider
    settings = BenchSettings(prompt_tokens=_int_list("--prompt-tokens", prompt_tokens),
                             gen_tokens=_int_list("--gen-tokens", gen_tokens),
                             iterations=iterations, warmup=warmup, threads=local.threads,
                             concurrency=_int_list("--concurrency", concurrency, "1,2,4"),
                             device_id=device_id)
    settings.validate()
    thresholds = Thresholds(min_gen_tps=min_gen_tps, max_ttft_ms=max_ttft_ms, max_rss_mb=max_rss_mb)
    with bench_view.BenchProgressView(out) as progress:
        report = run_benchmark(model, _execution_providers(execution_provider), settings,
                               thresholds, on_progress=progress.update)
    for run in report.runs:
        for message in run.warnings:
            out.warning(f"{run.label}: {message}")
    violation = report.violation_error()
    if output is None:  # stdout; with --json a violation's error object carries the report
        out.result(report.to_json, lambda out, _: bench_view.write_report(out, report, fmt, None),
                   failure=violation)
        return
    bench_view.write_report(out, report, fmt, output)
    if violation is not None:
        raise violation


def _int_list(option: str, text: str, example: str = "64,512") -> tuple[int, ...]:
    from agentic_onnx.core.errors import UsageError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"Invalid value for {option}: {text!r} is not a list of integers.",
                         f"Example: {option} {example}") from None
    if not values:
        raise UsageError(f"{option} is empty.", f"Example: {option} {example}")
    return values


def _execution_providers(text: str) -> list[str]:
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.machine.execution_provider import EP_CHOICES

    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in EP_CHOICES]
    if unknown or not names:
        raise UsageError(f"Unknown execution provider {', '.join(unknown) or repr(text)}.",
                         f"Use one or more of: {', '.join(EP_CHOICES)} (comma-separated).")
    return list(dict.fromkeys(names))

