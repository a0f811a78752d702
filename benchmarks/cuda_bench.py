"""`run` against a bare genai loop on CUDA, at GPU token rates (where per-token overhead shows).

On a machine with an NVIDIA GPU and the CUDA genai build:
    python benchmarks/make_shapes.py --shape fast --ep cuda --name fast-shape-cuda
    python benchmarks/cuda_bench.py benchmarks/models/fast-shape-cuda [--reps 5]
Prints one JSON report: per variant, the decode rate and TTFT of each repetition (processes
interleaved) and the medians; ratios are per repetition against the bare loop beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = "Write a long story about a lighthouse keeper."


def bare(model: str, max_tokens: int) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bare_loop.py"), "single",
                             model, "--ep", "cuda", "--task", TASK, "--max-tokens", str(max_tokens)],
                            capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(result.stderr.rsplit("BARE_JSON ", 1)[1])
    return {"decode_tokens_per_s": report["decode_tokens_per_s"], "ttft_ms": report["ttft_ms"],
            "tokens": report["completion_tokens"]}


def ours(model: str, max_tokens: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "agentic_onnx", "run", "--model", model,
                             "-e", "cuda", "--task", TASK, "--max-tokens", str(max_tokens),
                             "--json"], capture_output=True, text=True, timeout=600, check=True,
                            cwd=ROOT)
    report = json.loads(result.stdout)
    assert report["execution_provider"] == "cuda", report
    return {"decode_tokens_per_s": report["timings"]["decode_tokens_per_s"],
            "ttft_ms": report["timings"]["ttft_ms"],
            "tokens": report["usage"]["completion_tokens"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    os.environ["AGENTIC_FLOW_HOME"] = tempfile.mkdtemp(prefix="agentic-cuda-bench-")
    runs: dict[str, list[dict]] = {"bare loop": [], "run --json": []}
    for rep in range(args.reps):
        order = [("bare loop", bare), ("run --json", ours)]
        for name, measure in (order if rep % 2 == 0 else order[::-1]):  # interleaved
            runs[name].append(measure(args.model, args.max_tokens))
    ratios = [o["decode_tokens_per_s"] / b["decode_tokens_per_s"]
              for b, o in zip(runs["bare loop"], runs["run --json"])]
    ttft_diff = [o["ttft_ms"] - b["ttft_ms"] for b, o in zip(runs["bare loop"], runs["run --json"])]
    summary = {name: {"decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in rs),
                      "ttft_ms_median": statistics.median(r["ttft_ms"] for r in rs)}
               for name, rs in runs.items()}
    print(json.dumps({"runs": runs, "summary": summary,
                      "decode_ratio_median": statistics.median(ratios),
                      "decode_ratios": ratios, "ttft_diff_ms_median": statistics.median(ttft_diff)},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
