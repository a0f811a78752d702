"""Rendering of `onnx test` and `onnx benchmark`: progress (stderr), tables, comparison, chart,
and the json / csv / md formats. Column meanings and schemas: docs/benchmark.md."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentic_onnx.cli.output import Output
from agentic_onnx.cli.render import key_value_table
from agentic_onnx.core.bench.runs import (
    ITERATION_METRICS,
    METRICS,
    MIB,
    BenchmarkReport,
    BenchProgress,
    BenchTestResult,
    RunResult,
    SmokeTestResult,
)

STATS = ("mean", "std", "p50", "p95", "cv")
CSV_RUN_COLUMNS = ("model", "execution_provider", "threads", "test", "prompt_tokens",
                   "gen_tokens", "iterations", "generated_tokens_min", "load_s", "peak_rss_mib",
                   "gpu_memory_mib")
# Added later, after the original columns so that their positions hold: concurrency, requests
# and the per-iteration metrics.
CSV_COLUMNS = (CSV_RUN_COLUMNS + tuple(f"{m}_{s}" for m in METRICS for s in STATS)
               + ("concurrency", "requests")
               + tuple(f"{m}_{s}" for m in ITERATION_METRICS for s in STATS))
BAR_WIDTH = 40


class BenchProgressView:
    """A progress bar on stderr, redrawn only between iterations (never while one is timed);
    silent when stderr is not a terminal."""

    def __init__(self, out: Output) -> None:
        console = out.stderr_console
        self._progress = (Progress(TextColumn("{task.description}"), BarColumn(),
                                   MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                   auto_refresh=False, transient=True)
                          if console.is_terminal else None)
        self._task: Any = None

    def __enter__(self) -> BenchProgressView:
        if self._progress:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None)
        return self

    def update(self, event: BenchProgress) -> None:
        if not self._progress:
            return
        what = {"load": "loading", "done": "done"}.get(event.phase, event.phase)
        description = f"{event.run} {event.test or ''} {what}".replace("  ", " ")
        self._progress.update(self._task, description=description, completed=event.step,
                              total=event.total)
        self._progress.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()


def render_smoke_test(out: Output, result: SmokeTestResult) -> None:
    rows = [
        ("status", "ok" if result.ok else "FAILED: no text generated"),
        ("model", result.model),
        ("execution provider", f"{result.execution_provider} ({result.threads} threads)"),
        ("load time", f"{result.load_s:.3f} s"),
        ("time to first token", _number(result.ttft_ms, "ms")),
        ("generation rate", _number(result.decode_tokens_per_s, "tokens/s")),
        ("tokens generated", str(result.completion_tokens)),
        ("output", result.text.strip()[:200] or "(empty)"),
    ]
    out.table(key_value_table("onnx test", rows))


def write_report(out: Output, report: BenchmarkReport, fmt: str, output: Path | None) -> None:
    """The report in `fmt` on stdout, or in FILE (a note on stderr says where)."""
    if fmt == "table":
        if output is None:
            _print_tables(report, out)
            return
        with output.open("w", encoding="utf-8") as handle:
            _print_tables(report, Output.to_file(handle, width=120))
    else:
        text = {"json": to_json_text, "csv": to_csv, "md": to_markdown}[fmt](report)
        if output is None:
            out.text(text)
            return
        output.write_text(text, encoding="utf-8")
    out.note(f"Wrote {fmt} results to {output}.")


def to_json_text(report: BenchmarkReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


def csv_rows(report: BenchmarkReport) -> list[dict[str, Any]]:
    """One row per model x EP x test; columns CSV_COLUMNS (docs/benchmark.md)."""
    rows = []
    for run in report.runs:
        for test in run.tests:
            row: dict[str, Any] = {
                "model": run.model, "execution_provider": run.execution_provider,
                "threads": run.threads, "test": test.name, "prompt_tokens": test.prompt_tokens,
                "gen_tokens": test.gen_tokens, "iterations": test.iterations,
                "generated_tokens_min": min(test.generated, default=0),
                "load_s": round(run.load_s, 4), "peak_rss_mib": _mib(run.peak_rss_bytes),
                "gpu_memory_mib": _mib(run.gpu_memory_bytes),
                "concurrency": test.concurrency, "requests": len(test.generated),
            }
            for metric in METRICS + ITERATION_METRICS:
                summary = test.summary(metric)
                for stat in STATS:
                    row[f"{metric}_{stat}"] = "" if summary is None else round(getattr(summary, stat), 4)
            rows.append(row)
    return rows


def to_csv(report: BenchmarkReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buffer.getvalue()


TABLE_HEADERS = ("model", "EP", "test", "TTFT ms", "pp t/s", "tg t/s", "e2e ms", "tg CV",
                 "load s", "RSS MiB", "agg t/s", "CPU")


def _table_cells(run: RunResult, test: BenchTestResult) -> list[str]:
    ttft, pp, tg, e2e = (test.summary(m) for m in METRICS)
    return [
        run.model, run.execution_provider, test.name, _mean_std(ttft), _mean_std(pp),
        _mean_std(tg), _mean_std(e2e), "n/a" if tg is None else f"{tg.cv:.1%}", f"{run.load_s:.2f}",
        str(_mib(run.peak_rss_bytes) or "n/a"), _mean_std(test.summary("aggregate_tps")),
        _percent(test.summary("cpu_util")),
    ]


def to_markdown(report: BenchmarkReport) -> str:
    machine = report.machine
    lines = [f"Machine: {machine.get('cpu')}, {machine.get('physical_cores')} physical cores, "
             f"onnxruntime-genai {machine.get('onnxruntime_genai')}; "
             f"{report.settings.iterations} iterations after {report.settings.warmup} warmup; "
             "values are mean ± std, per request; agg t/s and CPU per iteration.", "",
             "| " + " | ".join(TABLE_HEADERS) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(TABLE_HEADERS) - 3)) + "|"]
    for run in report.runs:
        for test in run.tests:
            lines.append("| " + " | ".join(_table_cells(run, test)) + " |")
    if report.violations:
        lines += ["", "Threshold violations:", ""] + [f"- {v.describe()}" for v in report.violations]
    return "\n".join(lines) + "\n"


TERMINAL_HEADERS = ("model", "EP", "test", "TTFT ms", "pp t/s", "tg t/s", "tg CV", "e2e ms")


def _print_tables(report: BenchmarkReport, out: Output) -> None:
    """Per test: mean ± std where it fits 80 columns; per run: load time and memory below.
    With --concurrency above 1, a second table: aggregate tokens/s and CPU per iteration."""
    table = Table(title="onnx benchmark (mean ± std)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for index, header in enumerate(TERMINAL_HEADERS):
        table.add_column(header, justify="left" if index < 3 else "right",
                         overflow="fold", no_wrap=index > 0)
    for run in report.runs:
        for test in run.tests:
            ttft, pp, tg, e2e = (test.summary(m) for m in METRICS)
            table.add_row(run.model, run.execution_provider, test.name, _mean_std(ttft),
                          _number(pp.mean if pp else None), _mean_std(tg),
                          "n/a" if tg is None else f"{tg.cv:.1%}",
                          _number(e2e.mean if e2e else None))
    out.table(table)
    if any(test.concurrency > 1 for run in report.runs for test in run.tests):
        out.table(concurrency_table(report))
    for run in report.runs:
        gpu = f", GPU memory {_mib(run.gpu_memory_bytes)} MiB" if run.gpu_memory_bytes else ""
        out.paragraph(f"{run.label}: load {run.load_s:.2f} s, peak RSS "
                      f"{_mib(run.peak_rss_bytes) or 'n/a'} MiB{gpu}, threads {run.threads}")
    if len(report.runs) > 1:
        out.table(comparison_table(report))
        for line in bar_chart(report, ascii_only=not out.unicode):
            out.paragraph(line)
    for violation in report.violations:
        out.paragraph(f"threshold violated: {violation.describe()}")


def concurrency_table(report: BenchmarkReport) -> Table:
    """Per iteration, all its requests together: aggregate generated tokens/s (against the same
    test one request at a time, when measured) and CPU utilisation."""
    table = Table(title="concurrent requests (per iteration, mean ± std)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for index, header in enumerate(("model", "EP", "test", "agg t/s", "vs c1", "CPU")):
        table.add_column(header, justify="left" if index < 3 else "right",
                         overflow="fold", no_wrap=index > 0)
    for run in report.runs:
        alone = {(t.prompt_tokens, t.gen_tokens): _mean(t, "aggregate_tps")
                 for t in run.tests if t.concurrency == 1}
        for test in run.tests:
            aggregate = _mean(test, "aggregate_tps")
            table.add_row(run.model, run.execution_provider, test.name,
                          _mean_std(test.summary("aggregate_tps")),
                          _ratio(aggregate, alone.get((test.prompt_tokens, test.gen_tokens))),
                          _percent(test.summary("cpu_util")))
    return table


def comparison_table(report: BenchmarkReport) -> Table:
    """Side by side, per test: each model x EP against the first one."""
    table = Table(title="comparison (relative to the first row of each test)", title_justify="left")
    for header in ("test", "model [EP]", "tg t/s", "vs first", "TTFT ms", "vs first"):
        table.add_column(header, justify="left" if header in ("test", "model [EP]") else "right")
    for name, entries in _by_test(report).items():
        base_tg, base_ttft = _mean(entries[0][1], "gen_tps"), _mean(entries[0][1], "ttft_ms")
        for run, test in entries:
            tg, ttft = _mean(test, "gen_tps"), _mean(test, "ttft_ms")
            table.add_row(name, run.label, _number(tg), _ratio(tg, base_tg), _number(ttft),
                          _ratio(ttft, base_ttft))
    return table


def bar_chart(report: BenchmarkReport, ascii_only: bool = False) -> list[str]:
    """Generation tokens/s per test as horizontal bars (prompt tokens/s for tg1 tests)."""
    full, empty = ("#", ".") if ascii_only else ("█", "·")
    lines = []
    for name, entries in _by_test(report).items():
        metric = "gen_tps" if any(_mean(t, "gen_tps") for _, t in entries) else "prompt_tps"
        values = [(run.label, _mean(test, metric) or 0.0) for run, test in entries]
        top = max(value for _, value in values) or 1.0
        width = max(len(label) for label, _ in values)
        lines.append(f"{name}: {'generation' if metric == 'gen_tps' else 'prompt'} tokens/s")
        for label, value in values:
            filled = round(BAR_WIDTH * value / top)
            lines.append(f"  {label:<{width}} {full * filled}{empty * (BAR_WIDTH - filled)} {_short(value)}")
    return lines


def _by_test(report: BenchmarkReport) -> dict[str, list[tuple[RunResult, BenchTestResult]]]:
    grouped: dict[str, list[tuple[RunResult, BenchTestResult]]] = {}
    for run in report.runs:
        for test in run.tests:
            grouped.setdefault(test.name, []).append((run, test))
    return grouped


def _mean(test: BenchTestResult, metric: str) -> float | None:
    summary = test.summary(metric)
    return None if summary is None else summary.mean


def _mean_std(summary: Any) -> str:
    return "n/a" if summary is None else f"{_short(summary.mean)} ± {_short(summary.std)}"


def _percent(summary: Any) -> str:
    return "n/a" if summary is None else f"{summary.mean:.0%}"


def _short(value: float) -> str:
    """Three significant digits or more: 12345 / 123.4 / 12.35 / 1.235."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{3 - len(str(int(abs(value))))}f}"


def _number(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{_short(value)}{' ' + unit if unit else ''}"


def _ratio(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}x"


def _mib(value: int | None) -> float | str:
    return "" if value is None else round(value / MIB, 1)
