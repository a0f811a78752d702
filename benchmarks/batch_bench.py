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
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gateway_bench import Serve  # noqa: E402

TASK = "Write a short story about a robot who learns to paint."


def ask(url: str, model: str, max_tokens: int, client: int = 0) -> tuple[float | None, int, str]:
    """One streamed greedy request of client number `client` (each its own prompt, so none
    continues another's cached conversation): (seconds to the first text, tokens, text)."""
    import httpx2

    body = {"model": model, "messages": [{"role": "user", "content": f"{TASK} ({client})"}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, tokens, text = time.perf_counter(), None, 0, []
    with httpx2.Client(timeout=600) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        first = first or time.perf_counter() - started
                        text.append(piece)
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return first, tokens, "".join(text)


def load(url: str, model: str, clients: int, max_tokens: int) -> dict:
    results: list[tuple[float | None, int, str]] = []
    lock, start = threading.Lock(), threading.Barrier(clients + 1)

    def client(number: int) -> None:
        start.wait()
        result = ask(url, model, max_tokens, number)
        with lock:
            results.append((number, result))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ttfts = sorted(first for _, (first, _, _) in results if first is not None)
    return {"wall_s": wall, "tokens_per_s": sum(t for _, (_, t, _) in results) / wall,
            "ttft_p50_s": statistics.median(ttfts),
            "ttft_p95_s": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
            "texts": {number: text for number, (_, _, text) in results}}


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
                        rows.setdefault((size, count), []).append(
                            load(server.url, served, count, args.max_tokens))
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
