#!/usr/bin/env python
"""What creating a genai generator costs for its `max_length` (its KV cache is allocated then).

    python benchmarks/generator_alloc.py MODEL [--lengths 4096,1024,128] [--reps 2]
    OPTS='{"enable_cpu_mem_arena": false}' python benchmarks/generator_alloc.py MODEL

Per repetition and length: seconds to create the generator, to prefill a 48-token prompt, and to
free it (2 intra-op threads; `OPTS` overlays more decoder session options). `serve` keeps a
KV-cache slot's generator for the whole context, which is why a slot is recycled rather than
created anew (core/generation/prefix_cache.py). By hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> int:
    import onnxruntime_genai as og

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--lengths", default="4096,1024,128")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    config = og.Config(args.model)
    config.clear_providers()
    extra = json.loads(os.environ.get("OPTS", "{}"))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": 2, **extra}}}}))
    model = og.Model(config)
    ids = list(og.Tokenizer(model).encode("Write a short story about a robot who learns to "
                                          "paint. " * 4))[:48]
    for rep in range(args.reps):
        for max_length in (int(n) for n in args.lengths.split(",")):
            started = time.perf_counter()
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=max_length, do_sample=False)
            generator = og.Generator(model, params)
            created = time.perf_counter()
            generator.append_tokens(ids)
            prefilled = time.perf_counter()
            del generator
            freed = time.perf_counter()
            print(f"rep {rep} max_length {max_length}: create {created - started:.2f} s, "
                  f"prefill {len(ids)} tokens {prefilled - created:.2f} s, "
                  f"free {freed - prefilled:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
