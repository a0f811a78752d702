#!/usr/bin/env python
"""The time to the first token of a new conversation in `serve` (a new tenant), one KV-cache slot.

    python benchmarks/new_conversation.py MODEL [--tenants 4] [--threads N]

Through core.generation.local.LocalGeneration with one slot (what a `serve` worker runs): the
first tenant's request creates the slot's generator (genai allocates its KV cache for the whole
context), each later tenant's takes the slot over. Prints each tenant's time to the first token.
Run it against another checkout with `PYTHONPATH=OTHER_CHECKOUT` to compare. By hand, not in CI.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> int:
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.events import FirstToken
    from agentic_onnx.core.generation.local import LocalGeneration
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.core.generation.request import ChatRequest
    from agentic_onnx.core.models.model_folder import open_model_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    model = load_model(open_model_folder(Path(args.model)), "cpu", args.threads)
    local = LocalGeneration(model, slots=1)
    options = build_options(max_tokens=2)
    for tenant in range(args.tenants):
        request = ChatRequest.of([{"role": "user", "content":
                                   f"Write a short story about a robot ({tenant})."}],
                                 options=options)
        started = time.perf_counter()
        for event in local.stream(request, f"tenant-{tenant}"):
            if isinstance(event, FirstToken):
                print(f"tenant {tenant}: first token after {time.perf_counter() - started:.2f} s",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
