#!/usr/bin/env python
"""Turn benchmarks/results/latest.json into docs/performance.md.

    python benchmarks/report.py [results.json]

Everything above the `## Findings` heading is regenerated; the Findings section (written by a
person, from the numbers) is kept as it is.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
FINDINGS = "## Findings"


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


CLEAN = 0.05  # a sample is clean when other processes used under 5% of the machine meanwhile


def clean(row: dict) -> bool:
    return row.get("others_share", 0.0) <= CLEAN


def paired(rows: list[dict], base: list[dict], key: str, op=lambda a, b: a / b,
           only_clean: bool = False) -> list[float]:
    """Per-repetition comparison with the baseline measured beside it (cancels drift)."""
    return [op(r[key], b[key]) for r, b in zip(rows, base)
            if r.get(key) is not None and b.get(key) is not None
            and (not only_clean or (clean(r) and clean(b)))]


def clean_note(data: dict) -> str:
    rows = [r for variant in data.values() for r in variant]
    if not rows or "others_share" not in rows[0]:
        return ""
    share = [r["others_share"] for r in rows]
    return (f"Other processes used {min(share):.0%}-{max(share):.0%} of the machine during these "
            f"measurements (median {statistics.median(share):.0%}); {sum(map(clean, rows))} of "
            f"{len(rows)} samples were *clean* (under {CLEAN:.0%}). ")


def f(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    return [
        f"- CPU: {m['cpu']} ({m['arch']}), {m['physical_cores']} physical / {m['logical_cores']} "
        f"logical cores, SIMD: {', '.join(m['simd']) or 'unknown'}",
        f"- Memory: {m['memory_bytes'] / 2**30:.1f} GiB; OS: {m['os']}; Python {m['python']}; "
        f"onnxruntime-genai {m['onnxruntime_genai']}; agentic-onnx {m['agentic_onnx']}",
        f"- Threads: {results['threads']} (physical cores) for every program unless stated",
        f"- Measured {results['started']}; load average before {fmt_load(results['load_before'])}, "
        f"after {fmt_load(results['load_after'])}. The machine is shared: every measurement waited "
        f"up to {results['settings']['quiet_wait']:.0f} s for the CPUs to be idle, and variants "
        "were interleaved so that the load that remained fell on all of them alike.",
    ]


def fmt_load(load: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def section_run(results: dict) -> list[str]:
    data = results.get("run_vs_bare")
    if not data:
        return []
    base = data["bare loop"]
    reps = len(base)
    lines = [
        "## 1. `run` against a bare genai loop (fast shape)", "",
        f"Fast shape, {reps} fresh processes per variant, interleaved; "
        f"`--max-tokens {results['settings']['max_tokens']}`, greedy. Decode rate and TTFT are each "
        "program's own report (ours: `--verbose` / `--json`, i.e. `Response`); *external* is "
        "(tokens - 1) / (first to last stdout byte) timed by the harness. Ratios are per "
        "repetition against the bare loop run beside it: median (min-max).", "",
        "| variant | decode t/s (median) | best | ratio to bare | ratio, clean pairs | external t/s "
        "| external ratio | TTFT ms (median) | TTFT - bare, ms | spawn to first byte, s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in data.items():
        decode = [r["decode_tokens_per_s"] for r in rows]
        is_base = name == "bare loop"
        lines.append("| " + " | ".join([
            name, f(median(decode)), f(max(decode)),
            "1" if is_base else spread(paired(rows, base, "decode_tokens_per_s")),
            "1" if is_base else spread(paired(rows, base, "decode_tokens_per_s", only_clean=True)),
            f(median([r.get("external_decode_tps") for r in rows])),
            "1" if is_base else spread(paired(rows, base, "external_decode_tps")),
            f(median([r["ttft_ms"] for r in rows])),
            "0" if is_base else spread(paired(rows, base, "ttft_ms", lambda a, b: a - b), 1),
            f(median([r.get("first_byte_s") for r in rows]), 3),
        ]) + " |")
    return lines + ["", clean_note(data), ""]


def section_benchmark(results: dict) -> list[str]:
    data = results.get("benchmark_vs_bare")
    if not data:
        return []
    base, ours = data["bare loop (bench)"], data["onnx benchmark"]
    gen = paired(ours, base, "decode_tokens_per_s")
    ttft = paired(ours, base, "ttft_ms")
    gen_clean = paired(ours, base, "decode_tokens_per_s", only_clean=True)
    ttft_clean = paired(ours, base, "ttft_ms", only_clean=True)
    judged = gen_clean or gen
    agree = bool(judged) and abs(statistics.median(judged) - 1) <= 0.05
    return [
        "## 2. `onnx benchmark` against the bare loop (fast shape)", "",
        "`onnx benchmark --json --prompt-tokens 64 --gen-tokens 128 --iterations 5 --warmup 1` "
        "against `bare_loop.py bench` with the same prompt ids and counts (each process's p50 over "
        f"its 5 iterations; {len(base)} processes each, interleaved).", "",
        "| program | gen t/s (median of per-process p50) | TTFT ms (median of per-process p50) |",
        "|---|---:|---:|",
        f"| bare loop | {f(median([r['decode_tokens_per_s'] for r in base]))} | "
        f"{f(median([r['ttft_ms'] for r in base]))} |",
        f"| onnx benchmark | {f(median([r['decode_tokens_per_s'] for r in ours]))} | "
        f"{f(median([r['ttft_ms'] for r in ours]))} |", "",
        f"Paired ratio, generation rate: {spread(gen)}; TTFT: {spread(ttft)}. "
        f"Clean pairs only: generation rate {spread(gen_clean)}, TTFT {spread(ttft_clean)}. "
        f"Agreement within 5% (generation rate, median of clean pairs, else of all): "
        f"**{'yes' if agree else 'no'}**.", "", clean_note(data), "",
    ]


def section_memory(results: dict) -> list[str]:
    data = results.get("phi3_memory_load")
    if not data:
        return []
    base, ours = data["bare loop"], data["run --json"]
    rss_b, rss_o = median([r["rss_bytes"] for r in base]), median([r["rss_bytes"] for r in ours])
    load_b, load_o = median([r["load_s"] for r in base]), median([r["load_s"] for r in ours])
    return [
        "## 3. Memory and cached load on the Phi-3-mini shape", "",
        "Phi-3-mini-4k shape, int4 (2.7 GB of ONNX data), after one unmeasured run to warm the OS "
        f"file cache; `--max-tokens 8`; {len(base)} processes each, interleaved. Peak RSS is the "
        "child's `ru_maxrss` from `wait4`; load time is each program's own (og.Config to "
        "og.Tokenizer; ours is `timings.load_s`, the engine's).", "",
        "| program | peak RSS (median) | max | load s (median) | decode t/s (8 tokens) | wall s |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {name} | {f(median([r['rss_bytes'] for r in rows]) / 2**30, 2, ' GiB')} | "
          f"{f(max(r['rss_bytes'] for r in rows) / 2**30, 2, ' GiB')} | "
          f"{f(median([r['load_s'] for r in rows]), 3)} | "
          f"{f(median([r['decode_tokens_per_s'] for r in rows]))} | "
          f"{f(median([r['wall_s'] for r in rows]), 2)} |" for name, rows in data.items()],
        "",
        f"`run` / bare: peak RSS {rss_o / rss_b:.3f}x ({(rss_o - rss_b) / 2**20:+.0f} MiB), "
        f"cached load {load_o / load_b:.3f}x "
        f"(paired {spread(paired(ours, base, 'load_s'))}).", "",
    ]


def section_help(results: dict) -> list[str]:
    data = results.get("help")
    if not data:
        return []
    return [
        "## 4. `agentic-onnx --help`", "",
        f"Wall time over {len(data['wall_s'])} runs: median {statistics.median(data['wall_s']) * 1000:.0f} ms "
        f"(min {min(data['wall_s']) * 1000:.0f}, max {max(data['wall_s']) * 1000:.0f}). "
        f"Modules imported: {data['module_count']} (sys.modules after `--help`), "
        f"{len(data['agentic_onnx_modules'])} of them ours: "
        f"{', '.join(data['agentic_onnx_modules'])}. "
        f"Forbidden modules imported ({', '.join(('onnxruntime_genai', 'huggingface_hub', 'pynvml'))}): "
        f"**{', '.join(data['forbidden_imported']) or 'none'}**.", "",
        "Third-party top-level packages: " + ", ".join(
            p for p in data["top_level_packages"] if p in
            ("typer", "rich", "click", "pydantic", "psutil", "markdown_it", "pygments", "shellingham",
             "annotated_doc", "mdurl", "numpy", "yaml", "filelock", "platformdirs")) + ".", "",
    ]


def section_threads(results: dict) -> list[str]:
    data = results.get("threads_default_vs_physical")
    if not data:
        return []
    (default_name, default), (ours_name, ours) = list(data.items())
    return [
        "## 5. genai's default threads against physical cores (fast shape)", "",
        "`bare_loop.py bench` (pp64+tg128, 3 iterations after 1 warmup), without the overlay "
        f"(genai's default) and with `intra_op_num_threads` = physical cores; {len(ours)} processes "
        "each, interleaved.", "",
        "| setting | gen t/s (median) | TTFT ms (median) |", "|---|---:|---:|",
        *[f"| {name} | {f(median([r['decode_tokens_per_s'] for r in rows]))} | "
          f"{f(median([r['ttft_ms'] for r in rows]))} |" for name, rows in data.items()], "",
        f"Physical cores / default, generation rate: {spread(paired(ours, default, 'decode_tokens_per_s'), 2)}; "
        f"TTFT: {spread(paired(ours, default, 'ttft_ms'), 2)}. Clean pairs only: generation rate "
        f"{spread(paired(ours, default, 'decode_tokens_per_s', only_clean=True), 2)}.", "",
        clean_note(data), "",
    ]


def section_overhead(results: dict) -> list[str]:
    data = results.get("overhead")
    if not data:
        return []
    base = data["bare loop"]
    lines = [
        "## 6. Per-token cost outside genai, in-process (fast shape)", "",
        "`benchmarks/overhead_probe.py` splits each token's time into the part inside genai's "
        "calls and the part outside them (bare: decode + write; ours: the engine's stream, "
        "`Response` and the view `run` uses, the live one drawing on a forced-terminal Rich "
        "console; *whole CLI* is `agentic-onnx run` itself, router included, in the probe's "
        "process). Per-run statistics over tokens, then the median over "
        f"{len(base)} processes: robust to other processes on the machine, unlike sections 1-2. "
        "*After last* is the time from the last token to the end of the stream (Usage, Finish, "
        "and whatever wrappers do there).", "",
        "| variant | inside genai, us/token | outside, median us | outside, mean us (last "
        "excluded) | after last, ms | extra vs bare, us/token | implied decode ratio | TTFT ms "
        "| TTFT - bare, ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    inside = median([r["inside_median_us"] for r in base])
    key = "outside_mean_but_last_us" if "outside_mean_but_last_us" in base[0] else "outside_mean_us"
    base_out = median([r[key] for r in base])
    for name, rows in data.items():
        out_mean = median([r[key] for r in rows])
        extra = out_mean - base_out
        implied = (inside + base_out) / (inside + out_mean)
        ttft = median([r.get("ttft_ms") for r in rows])
        ttft_diff = (spread(paired(rows, base, "ttft_ms", lambda a, b: a - b), 2)
                     if ttft is not None and name != "bare loop" else ("0" if ttft else "n/a"))
        lines.append(f"| {name} | {f(median([r['inside_median_us'] for r in rows]))} | "
                     f"{f(median([r['outside_median_us'] for r in rows]))} | {f(out_mean)} | "
                     f"{f(median([r.get('outside_last_ms') for r in rows]), 2)} | "
                     f"{f(extra)} | {implied:.4f} | {f(ttft, 2)} | {ttft_diff} |")
    return lines + ["", "*Implied decode ratio* = (inside + bare outside) / (inside + this "
                    "variant's outside), per-token means without the last: the decode rate the "
                    "variant reaches relative to the bare loop when genai's own time is the same. "
                    "The whole CLI's TTFT is not comparable here (its clock starts before loading).",
                    ""]


def render(results: dict) -> str:
    if isinstance(results.get("threads"), dict):  # results of the first harness version
        results["threads_default_vs_physical"] = results["threads"]
        results["threads"] = results["machine"]["physical_cores"]
    lines = [
        "# Performance", "",
        "<!-- Generated by benchmarks/report.py from benchmarks/results/latest.json "
        "(benchmarks/run_benchmarks.py); the Findings section is written by hand. -->", "",
        "What `agentic-onnx` costs on top of onnxruntime-genai, measured by "
        "`benchmarks/run_benchmarks.py` on random-weight models of real shapes built offline by "
        "`benchmarks/make_shapes.py` (int4, block 32, accuracy level 4, CPU EP): the Phi-3-mini "
        "shape (3.8 B parameters, 2.7 GB) and a *fast shape* (8 layers, hidden 1536) that decodes "
        "near 100 tokens/s here, standing in for GPU token rates where per-token overhead matters "
        "most. The baseline is `benchmarks/bare_loop.py`, genai's own example loop "
        "(generate, decode, print) with the same threads.", "",
        "Machine:", "", *machine_lines(results), "",
    ]
    for section in (section_run, section_benchmark, section_memory, section_help, section_threads,
                    section_overhead):
        lines += section(results)
    return "\n".join(lines)


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "latest.json"
    results = json.loads(source.read_text(encoding="utf-8"))
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    findings = old[old.index(FINDINGS):] if FINDINGS in old else f"{FINDINGS}\n\n(to be written)\n"
    DOC.write_text(render(results) + "\n" + findings, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
