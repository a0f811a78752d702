#!/usr/bin/env python
"""The resident service against one-shot processes, and concurrent clients against `serve`.

    python benchmarks/service_bench.py MODEL [--runs 10] [--max-tokens 32] [--clients 1,2,4,8]

1. `--runs` sequential `agentic-onnx run --provider onnx --model MODEL --task ... --max-tokens N`
   calls in fresh processes: without a service (each loads the model), then with one started by
   `agentic-onnx service start` (the first call loads it there, the others find it resident).
   Reports each side's total wall time and the ratio.
2. 1, 2, 4, 8 concurrent clients against the service's OpenAI endpoint (streamed, greedy, the
   same prompt each): aggregate generated tokens/s and p50/p95 time to first token. Requests to
   one model queue (no batching on the CPU EP), so aggregate throughput stays flat while TTFT
   grows with the queue.

Runs in a private AGENTIC_FLOW_HOME; prints a Markdown table and one `RESULT_JSON {...}` line.
By hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TASK = "Write a short story about a robot who learns to paint."


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentic_onnx", *args], capture_output=True,
                          text=True, env=env, check=True)


def sequential(model: str, runs: int, max_tokens: int, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    loads = []
    for _ in range(runs):
        out = cli("--provider", "onnx", "--model", model, "--task", TASK, "--max-tokens",
                  str(max_tokens), "--json", env=env)
        loads.append(json.loads(out.stdout)["timings"]["load_s"])
    return {"wall_s": time.perf_counter() - started, "load_s": loads}


def stream_one(url: str, token: str, model: str, max_tokens: int) -> tuple[float | None, int]:
    """One streamed request: (seconds to the first text, completion tokens)."""
    import httpx2

    body = {"model": model, "messages": [{"role": "user", "content": TASK}],
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    started, first, tokens = time.perf_counter(), None, 0
    with httpx2.Client(timeout=600) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {token}"}) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return first, tokens


def concurrent(url: str, token: str, model: str, clients: int, max_tokens: int) -> dict:
    results: list[tuple[float | None, int]] = []
    lock = threading.Lock()

    def client() -> None:
        result = stream_one(url, token, model, max_tokens)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ttfts = sorted(first for first, _ in results if first is not None)
    return {"clients": clients, "wall_s": wall,
            "aggregate_tps": sum(tokens for _, tokens in results) / wall,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] if ttfts else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--clients", default="1,2,4,8")
    args = parser.parse_args()
    model = str(Path(args.model).resolve())
    home = tempfile.mkdtemp(prefix="agentic-service-bench-")
    env = {**os.environ, "AGENTIC_FLOW_HOME": home}
    without = sequential(model, args.runs, args.max_tokens, {**env, "AGENTIC_ONNX_NO_SERVICE": "1"})
    started = json.loads(cli("service", "start", "--json", env=env).stdout)
    try:
        with_service = sequential(model, args.runs, args.max_tokens, env)
        token = json.loads((Path(home) / "service.json").read_text())["token"]
        stream_one(started["url"], token, model, 4)  # the model resident before measuring
        loads = [concurrent(started["url"], token, model, int(n), args.max_tokens)
                 for n in args.clients.split(",")]
    finally:
        cli("service", "stop", env=env)
    print(f"| {args.runs} sequential `run` calls | wall s | load s (first, rest mean) |")
    print("|---|---:|---:|")
    for label, side in (("in process", without), ("through the service", with_service)):
        rest = statistics.fmean(side["load_s"][1:]) if len(side["load_s"]) > 1 else 0.0
        print(f"| {label} | {side['wall_s']:.1f} | {side['load_s'][0]:.2f}, {rest:.2f} |")
    print(f"\nratio (service / in process): {with_service['wall_s'] / without['wall_s']:.2f}\n")
    print("| clients | aggregate tok/s | TTFT p50 s | TTFT p95 s |")
    print("|---:|---:|---:|---:|")
    for row in loads:
        print(f"| {row['clients']} | {row['aggregate_tps']:.1f} | {row['ttft_p50_s']:.2f} | "
              f"{row['ttft_p95_s']:.2f} |")
    sys.stderr.write("RESULT_JSON " + json.dumps({"without": without, "with": with_service,
                                                   "concurrent": loads}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
