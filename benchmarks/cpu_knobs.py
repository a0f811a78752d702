#!/usr/bin/env python
"""ONNX Runtime's CPU knobs that onnxruntime-genai 0.18 lets a model's config set, each against
the baseline, in fresh processes interleaved over repetitions.

    python benchmarks/cpu_knobs.py MODEL [MODEL ...] [--reps 2] [--prompt-tokens 64]
                                         [--gen-tokens 64] [--variants baseline,threads-1,...]

Several models (the same shape built with other int4 settings: make_shapes.py --block-size 128,
--accuracy-level 0) are compared variant by variant, the first model's first variant the
baseline.

Every run is `benchmarks/bare_loop.py bench MODEL` (a bare genai loop: no agentic-onnx code in
the loop) with the variant's decoder `session_options` overlaid, `--warmup 0 -n 3`: the first
generation of the process (what a one-shot `run` pays) and the median of the two after it.
Reported per variant (medians over repetitions): load s, prefill tok/s (prompt tokens over the
time to the first token), TTFT ms and decode tok/s, first and warmed, and the ratio to the
baseline measured in the same repetitions. Spinning (`session.intra_op.allow_spinning`) and
prepacking are ORT config entries, which genai 0.18's config parser refuses, so they are not
among the variants. By hand, not in CI; prints a Markdown table and `RESULT_JSON {...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
CORES = os.cpu_count() or 1
VARIANTS = {
    "baseline": {"intra_op_num_threads": CORES},
    "threads-1": {"intra_op_num_threads": 1},
    "genai-default-threads": {},
    "no-arena": {"intra_op_num_threads": CORES, "enable_cpu_mem_arena": False},
    "no-mem-pattern": {"intra_op_num_threads": CORES, "enable_mem_pattern": False},
    "basic-optimizations": {"intra_op_num_threads": CORES,
                            "graph_optimization_level": "ORT_ENABLE_BASIC"},
    "inter-op-1-sequential": {"intra_op_num_threads": CORES, "inter_op_num_threads": 1,
                              "execution_mode": "ORT_SEQUENTIAL"},
}


def run(model: str, options: dict, prompt_tokens: int, gen_tokens: int) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / "bare_loop.py"), "bench", model, "--warmup", "0", "-n", "3",
         "--prompt-tokens", str(prompt_tokens), "--gen-tokens", str(gen_tokens),
         "--session-options", json.dumps(options)], capture_output=True, text=True, check=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("BARE_JSON "))
    report = json.loads(line[len("BARE_JSON "):])
    first, *later = report["iterations"]

    def rates(iteration: dict) -> tuple[float, float, float]:
        ttft = iteration["ttft_ms"]
        return iteration["prompt_tokens"] / (ttft / 1000), ttft, iteration["decode_tokens_per_s"]

    warmed = [rates(iteration) for iteration in later]
    return {"load_s": report["load_s"], "first": rates(first),
            "warmed": tuple(statistics.median(values) for values in zip(*warmed))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    runs = [(model, variant) for model in args.models for variant in args.variants.split(",")]
    label = {pair: (f"{Path(pair[0]).name}: {pair[1]}" if len(args.models) > 1 else pair[1])
             for pair in runs}
    names = [label[pair] for pair in runs]
    results: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(args.reps):
        for model, variant in runs:
            results[label[(model, variant)]].append(
                run(model, VARIANTS[variant], args.prompt_tokens, args.gen_tokens))
            print(f"rep {rep + 1} {label[(model, variant)]}: done", file=sys.stderr, flush=True)

    def median(name: str, key: str, index: int | None = None) -> float:
        values = [r[key] if index is None else r[key][index] for r in results[name]]
        return statistics.median(values)

    print(f"{', '.join(Path(m).name for m in args.models)}, "
          f"pp{args.prompt_tokens}+tg{args.gen_tokens}, {CORES} cores, "
          f"{args.reps} interleaved repetitions (medians)\n")
    print("| variant | load s | prefill tok/s | TTFT ms | decode tok/s | first-gen decode tok/s "
          "| decode vs baseline | prefill vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = names[0]
    summary = {}
    for name in names:
        row = {"load_s": median(name, "load_s"), "prefill": median(name, "warmed", 0),
               "ttft_ms": median(name, "warmed", 1), "decode": median(name, "warmed", 2),
               "first_decode": median(name, "first", 2), "first_ttft_ms": median(name, "first", 1)}
        summary[name] = row
        print(f"| {name} | {row['load_s']:.2f} | {row['prefill']:.1f} | {row['ttft_ms']:.0f} | "
              f"{row['decode']:.2f} | {row['first_decode']:.2f} | "
              f"{row['decode'] / median(base, 'warmed', 2):.3f} | "
              f"{row['prefill'] / median(base, 'warmed', 0):.3f} |")
    print("RESULT_JSON " + json.dumps({"variants": VARIANTS, "summary": summary,
                                       "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
