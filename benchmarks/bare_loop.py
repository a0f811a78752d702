#!/usr/bin/env python
"""The baseline: a bare onnxruntime-genai decode loop, as genai's own examples write it.

It imports nothing from agentic_onnx at load or decode time (only the benchmark's prompt text,
as a string, in `bench` mode) and prints one `BARE_JSON {...}` line on stderr at the end.

    python benchmarks/bare_loop.py single MODEL --task TEXT --max-tokens 128 [--threads N]
    python benchmarks/bare_loop.py bench  MODEL --prompt-tokens 64 --gen-tokens 128 -n 5 --warmup 1

`--threads 0` leaves intra_op_num_threads at genai's default; otherwise it is set through
Config.overlay exactly as agentic_onnx.core.generation.engine does. `--session-options JSON`
overlays more of the decoder's session options (benchmarks/cpu_knobs.py tries them). `single` mirrors one `agentic-onnx run`
process: load, render the chat template, encode, then one generation whose tokens are decoded
and written to stdout as they come (flushed per token, like genai's example).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time


def load(path: str, threads: int, ep: str = "cpu", session_options: dict | None = None):
    import onnxruntime_genai as og

    og.disable_telemetry_events()
    started = time.perf_counter()
    config = og.Config(path)
    if ep == "cpu":  # else: the variant's own provider options (a CUDA variant runs on CUDA)
        config.clear_providers()
    options = {**({"intra_op_num_threads": threads} if threads else {}), **(session_options or {})}
    if options:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    return og, model, tokenizer, time.perf_counter() - started


def generate(og, model, tokenizer, ids: list[int], max_new: int, out=None) -> dict:
    """One greedy generation; TTFT and decode rate defined as agentic_onnx's Response does."""
    started = time.perf_counter()
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_new, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    stream = tokenizer.create_stream()
    first = None
    count = 0
    while not generator.is_done():
        generator.generate_next_token()
        text = stream.decode(generator.get_next_tokens()[0])
        count += 1
        if out is not None:
            out.write(text)
            out.flush()
        if first is None:
            first = time.perf_counter()
    ended = time.perf_counter()
    return {"prompt_tokens": len(ids), "completion_tokens": count,
            "ttft_ms": (first - started) * 1000.0,
            "decode_tokens_per_s": (count - 1) / (ended - first) if count > 1 else None,
            "total_s": ended - started}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("single", "bench"))
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--task", default="Hello")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("-n", "--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ep", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--session-options", default="{}",
                        help="more of genai's decoder session_options, as JSON")
    args = parser.parse_args()
    session_options = json.loads(args.session_options)
    og, model, tokenizer, load_s = load(args.model, args.threads, args.ep, session_options)
    report: dict = {"load_s": load_s, "threads": args.threads,
                    "session_options": session_options}
    if args.mode == "single":
        started = time.perf_counter()  # like run's TTFT, include the chat template and encoding
        prompt = tokenizer.apply_chat_template(
            json.dumps([{"role": "user", "content": args.task}]), add_generation_prompt=True)
        ids = [int(t) for t in tokenizer.encode(prompt)]
        prepare_s = time.perf_counter() - started
        result = generate(og, model, tokenizer, ids, args.max_tokens, out=sys.stdout)
        result["ttft_ms"] += prepare_s * 1000.0
        result["total_s"] += prepare_s
        report.update(result)
        sys.stdout.write("\n")
    else:
        from agentic_onnx.core.bench.runs import PROMPT_SOURCE  # the text only: same prompt ids

        base = [int(t) for t in tokenizer.encode(PROMPT_SOURCE)]
        ids = (base * math.ceil(args.prompt_tokens / len(base)))[:args.prompt_tokens]
        runs = [generate(og, model, tokenizer, ids, args.gen_tokens)
                for _ in range(args.warmup + args.iterations)][args.warmup:]
        report["iterations"] = runs
    sys.stdout.flush()
    sys.stderr.write("BARE_JSON " + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
