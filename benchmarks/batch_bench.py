#!/usr/bin/env python
"""Concurrent clients against `serve`, one request at a time versus decoded in batches.

    python benchmarks/batch_bench.py MODEL [--batch-sizes 1,4] [--clients 1,2,4] [--rounds 2]
                                           [--max-tokens 32]

For each batch size (`serve --batch-size N`, interleaved over `--rounds` so drift on a shared
machine hits both alike), N concurrent streamed greedy clients send the same prompt to the
server's OpenAI endpoint: aggregate generated tokens/s, p50/p95 time to first token, and whether
every answer equals the one-client answer (batched decoding must not change greedy answers).
Runs by hand, not in CI; prints a Markdown table and `RESULT_JSON {...}` on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_load import Serve, ask, load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    model = str(Path(args.model).resolve())
    sizes = [int(n) for n in args.batch_sizes.split(",")]
    clients = [int(n) for n in args.clients.split(",")]
    rows: dict[tuple[int, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as scratch:
        for round_ in range(args.rounds):
            for size in sizes:
                home = Path(scratch) / f"r{round_}-b{size}"
                home.mkdir()
                server = Serve(home, "--model", model, "--threads", str(args.threads),
                               "--batch-size", str(size), "--kv-cache-slots", "1",
                               "--max-queue", "64")
                try:
                    served = Path(model).name
                    ask(server.url, served, 4, client=-1)  # warm-up
                    for count in clients:
                        result = load(server.url, served, count, args.max_tokens)
                        result["texts"] = {a.client: a.text for a in result.pop("answers")}
                        rows.setdefault((size, count), []).append(result)
                finally:
                    server.stop()
    print(f"{args.max_tokens} greedy tokens per request, {args.rounds} rounds, "
          f"model {Path(model).name}, threads {args.threads}\n")
    print("| batch size | clients | tokens/s (median) | vs batch 1 | TTFT p50 s | TTFT p95 s | "
          "answers = alone |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    summary = []
    # every client's answer alone: with one client, or one request at a time
    reference = {number: text for (size, _), runs in rows.items() if size == 1
                 for run in runs for number, text in run["texts"].items()}
    for (size, count), runs in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        tps = statistics.median(run["tokens_per_s"] for run in runs)
        base = statistics.median(run["tokens_per_s"] for run in rows[(sizes[0], count)])
        same = all(text == reference.get(number, text) for run in runs
                   for number, text in run["texts"].items())
        summary.append({"batch_size": size, "clients": count, "tokens_per_s": tps,
                        "ttft_p50_s": statistics.median(r["ttft_p50_s"] for r in runs),
                        "ttft_p95_s": statistics.median(r["ttft_p95_s"] for r in runs),
                        "answers_equal_alone": same})
        row = summary[-1]
        print(f"| {size} | {count} | {tps:.1f} | {tps / base:.2f}x | {row['ttft_p50_s']:.2f} | "
              f"{row['ttft_p95_s']:.2f} | {'yes' if same else 'no'} |")
    sys.stderr.write("RESULT_JSON " + json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
