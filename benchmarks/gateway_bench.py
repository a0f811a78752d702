#!/usr/bin/env python
"""Aggregate throughput through `serve --route` over 1, 2 and 3 local `serve` deployments.

    python benchmarks/gateway_bench.py MODEL [--nodes 1,2,3] [--clients 6] [--requests 2]
                                             [--max-tokens 32] [--threads-per-node N]

For each node count n: n `agentic-onnx serve --model MODEL` processes on loopback ports (each
with its own home and `--threads` = cores // n unless given), and one gateway
`agentic-onnx serve --route` whose config lists them as the deployments of one provider
(least-outstanding). `--clients` clients each send `--requests` streamed greedy requests of
`--max-tokens` tokens through the gateway at once. Reported per n: aggregate generated tokens/s,
p50/p95 time to first token, requests per deployment (from `x-agentic-deployment`), and, for
n = 1, the same load sent straight to the node (the gateway's own cost).

On a machine with few cores, extra local processes share the same cores and memory bandwidth:
expect little scaling here. Across machines each deployment brings its own, and the aggregate
grows with the deployments until the gateway's CPU (one routing thread per request) or the
network is the limit. Runs by hand, not in CI; prints a Markdown table and `RESULT_JSON {...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

TASK = "Write a short story about a robot who learns to paint."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Serve:
    """One `agentic-onnx serve` process, ready when /health answers 200."""

    def __init__(self, home: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "AGENTIC_FLOW_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.log = open(home / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentic_onnx", "serve", "--host", "127.0.0.1", "--port",
             str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 300) -> None:
        import httpx2

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: see {self.log.name}")
            try:
                if httpx2.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve did not get ready: see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def stream_one(url: str, model: str, max_tokens: int) -> tuple[float | None, int, str]:
    """One streamed request: (seconds to the first text, completion tokens, deployment)."""
    import httpx2

    body = {"model": model, "messages": [{"role": "user", "content": TASK}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, tokens = time.perf_counter(), None, 0
    with httpx2.Client(timeout=600) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
            reply.raise_for_status()
            deployment = reply.headers.get("x-agentic-deployment", "direct")
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and any((c.get("delta") or {}).get("content")
                                         for c in chunk.get("choices") or []):
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return first, tokens, deployment


def load(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    results: list[tuple[float | None, int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client() -> None:
        start.wait()
        for _ in range(requests):
            result = stream_one(url, model, max_tokens)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ttfts = sorted(first for first, _, _ in results if first is not None)
    return {"wall_s": round(wall, 2),
            "tokens_per_s": round(sum(tokens for _, tokens, _ in results) / wall, 2),
            "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1) if ttfts else None,
            "ttft_p95_ms": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] * 1000, 1)
            if ttfts else None,
            "per_deployment": dict(Counter(deployment for _, _, deployment in results))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="a model folder (every node and the gateway load it)")
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads-per-node", type=int, default=None)
    args = parser.parse_args()
    model = str(Path(args.model).resolve())
    model_id = Path(model).name
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as scratch:
        root = Path(scratch)
        for count in [int(n) for n in args.nodes.split(",")]:
            threads = args.threads_per_node or max(1, cores // count)
            nodes = []
            for index in range(count):
                home = root / f"n{count}-node{index}"
                home.mkdir()
                nodes.append(Serve(home, "--model", model, "--threads", str(threads)))
            gateway_home = root / f"n{count}-gateway"
            gateway_home.mkdir()
            config = {"defaultProvider": "nodes", "fallbackChain": ["nodes"], "providers": {
                "onnx": {}, "nodes": {"type": "openai", "timeout": 600000, "maxRetries": 0,
                                      "models": {"default": model_id},
                                      "deployments": [{"baseUrl": f"{n.url}/v1", "local": True}
                                                      for n in nodes]}}}
            (gateway_home / "config.json").write_text(json.dumps(config))
            gateway = Serve(gateway_home, "--model", model, "--threads", "1", "--route",
                            "--max-queue", str(args.clients * 2))
            try:
                stream_one(gateway.url, "auto", 4)  # each node's first request, once
                for node in nodes[1:]:
                    stream_one(node.url, model_id, 4)
                row = {"nodes": count, "threads_per_node": threads, "via": "gateway",
                       **load(gateway.url, "auto", args.clients, args.requests,
                              args.max_tokens)}
                rows.append(row)
                if count == 1:
                    rows.append({"nodes": 1, "threads_per_node": threads, "via": "direct",
                                 **load(nodes[0].url, model_id, args.clients, args.requests,
                                        args.max_tokens)})
            finally:
                gateway.stop()
                for node in nodes:
                    node.stop()
    base = next(row for row in rows if row["via"] == "gateway")["tokens_per_s"]
    print(f"{args.clients} clients x {args.requests} requests x {args.max_tokens} tokens, "
          f"{cores} cores, model {model_id}\n")
    print("| nodes | threads/node | via | tokens/s | vs 1 node | TTFT p50 ms | p95 ms | "
          "requests per deployment |")
    print("|---:|---:|---|---:|---:|---:|---:|---|")
    for row in rows:
        spread = ", ".join(str(n) for n in row["per_deployment"].values())
        print(f"| {row['nodes']} | {row['threads_per_node']} | {row['via']} | "
              f"{row['tokens_per_s']} | {row['tokens_per_s'] / base:.2f}x | {row['ttft_p50_ms']} "
              f"| {row['ttft_p95_ms']} | {spread} |")
    print("RESULT_JSON " + json.dumps({"cores": cores, "model": model_id, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
