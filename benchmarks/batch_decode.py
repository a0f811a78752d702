#!/usr/bin/env python
"""N requests one at a time against the same N decoded together (core/generation/batch.py), in
one process on one loaded model, interleaved over repetitions.

    python benchmarks/batch_decode.py MODEL [--requests 4] [--max-tokens 32] [--reps 3]
                                            [--threads N]

Each repetition runs the N greedy requests (the benchmark task with a client number: prompts of
slightly different lengths, so the batch pads) one after the other through
`LoadedModel.stream`, then together through `plan_batch` (their streams read in turn, one event
each, as serve's worker reads them); aggregate generated tokens/s (prefill included) and
whether every batched answer equals the lone one. The first repetition warms the process up and
is not counted. By hand, not in CI; prints a Markdown table and `RESULT_JSON {...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

TASK = "Write a short story about a robot who learns to paint."


def consume_in_turn(streams: list) -> list[dict]:  # noqa: ANN001
    """Read the streams one event each in turn until all end; each one's text and tokens."""
    from agentic_onnx.core.generation.events import TextDelta, Usage

    answers = [{"text": "", "tokens": 0} for _ in streams]
    live = dict(enumerate(streams))
    while live:
        for index, stream in list(live.items()):
            try:
                event = next(stream)
            except StopIteration:
                del live[index]
                continue
            if isinstance(event, TextDelta):
                answers[index]["text"] += event.text
            elif isinstance(event, Usage):
                answers[index]["tokens"] = event.completion_tokens
    return answers


def main() -> int:
    from agentic_onnx.core.generation.batch import plan_batch
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.core.generation.request import ChatRequest
    from agentic_onnx.core.models.model_folder import open_model_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ep", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the check a lent GPU machine runs before batching is "
                        "turned on there by default")
    args = parser.parse_args()
    model = load_model(open_model_folder(Path(args.model)), args.ep, args.threads)
    options = build_options(max_tokens=args.max_tokens)
    requests = [ChatRequest.of([{"role": "user", "content": f"{TASK} ({n})"}], options=options)
                for n in range(args.requests)]
    rows = []
    for rep in range(args.reps + 1):
        started = time.perf_counter()
        alone = [consume_in_turn([iter(model.stream(r.messages, r.options))])[0]
                 for r in requests]
        alone_s = time.perf_counter() - started
        started = time.perf_counter()
        batch = plan_batch(model, requests)
        together = consume_in_turn(batch.streams())
        together_s = time.perf_counter() - started
        if rep == 0:
            continue  # the process's first generations: warm-up
        rows.append({"alone_tps": sum(a["tokens"] for a in alone) / alone_s,
                     "batched_tps": sum(a["tokens"] for a in together) / together_s,
                     "equal": [a["text"] == b["text"] for a, b in zip(alone, together)],
                     "padded_to": batch.width,
                     "prompts": [len(p) for p in batch.prompts]})
    alone_tps = statistics.median(row["alone_tps"] for row in rows)
    batched_tps = statistics.median(row["batched_tps"] for row in rows)
    print(f"{args.requests} requests x {args.max_tokens} greedy tokens, "
          f"{os.path.basename(os.path.normpath(args.model))}, {model.execution_provider}, "
          f"threads {args.threads}, "
          f"{args.reps} repetitions (medians)\n")
    print("| one at a time tok/s | batched tok/s | ratio | answers equal alone |")
    print("|---:|---:|---:|---|")
    equal = sum(sum(row["equal"]) for row in rows)
    print(f"| {alone_tps:.2f} | {batched_tps:.2f} | {batched_tps / alone_tps:.2f}x | "
          f"{equal} of {len(rows) * args.requests} |")
    sys.stderr.write("RESULT_JSON " + json.dumps(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
