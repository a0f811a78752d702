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
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_load import Serve, ask, load  # noqa: E402


def summary(nodes: int, threads: int, via: str, result: dict) -> dict:
    return {"nodes": nodes, "threads_per_node": threads, "via": via,
            "wall_s": round(result["wall_s"], 2),
            "tokens_per_s": round(result["tokens_per_s"], 2),
            "ttft_p50_ms": round(result["ttft_p50_s"] * 1000, 1),
            "ttft_p95_ms": round(result["ttft_p95_s"] * 1000, 1),
            "per_deployment": dict(Counter(a.deployment for a in result["answers"]))}


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
                ask(gateway.url, "auto", 4, client=-1)  # each node's first request, once
                for node in nodes[1:]:
                    ask(node.url, model_id, 4, client=-1)
                rows.append(summary(count, threads, "gateway", load(
                    gateway.url, "auto", args.clients, args.max_tokens, args.requests)))
                if count == 1:
                    rows.append(summary(1, threads, "direct", load(
                        nodes[0].url, model_id, args.clients, args.max_tokens, args.requests)))
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
