#!/usr/bin/env python
"""Per-token cost outside onnxruntime-genai, measured in-process (robust on a busy machine).

End-to-end rates on a shared 2-core machine swing by 10-20% between runs, far more than the 2%
we want to resolve. This probe instead splits every token's time into the part spent inside
genai's calls and the part spent outside them (detokenizing, our stream, Response, rendering),
and reports medians over tokens, which preemption by other processes barely moves.

    python benchmarks/overhead_probe.py MODEL {bare,piped,live} [--max-tokens N] [--threads N]

- `bare`: genai's example loop (generate_next_token, get_next_tokens, decode, write+flush).
- `cli`: the whole `agentic-onnx run` in this process (router included), stdout to /dev/null.
- `piped`/`live`: the request through `LocalGeneration` (core/generation/local.py, the one local
  entry `run` uses) and `Response` into `render.PlainStream` or `render.LiveMarkdownStream` (a
  Rich console forced to terminal mode, writing to /dev/null), exactly the objects `run` uses.
  Inside = each `next()` on `LoadedModel.generate_tokens`.
Prints one `PROBE_JSON {...}` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

TASK = "Write a long story about a robot who learns to paint."


def bare(path: str, threads: int, max_tokens: int) -> dict:
    import onnxruntime_genai as og

    og.disable_telemetry_events()  # as the engine and bare_loop.py do
    config = og.Config(path)
    config.clear_providers()
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    out = open(os.devnull, "w")
    clock = time.perf_counter
    started = clock()
    prompt = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": TASK}]),
                                           add_generation_prompt=True)
    ids = [int(t) for t in tokenizer.encode(prompt)]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    generator = og.Generator(model, params)
    stream = tokenizer.create_stream()
    generator.append_tokens(ids)
    pre = clock() - started
    inside, outside = [], []
    while not generator.is_done():
        t0 = clock()
        generator.generate_next_token()
        token = generator.get_next_tokens()[0]
        t1 = clock()
        out.write(stream.decode(token))
        out.flush()
        t2 = clock()
        inside.append(t1 - t0)
        outside.append(t2 - t1)
    return summary(pre, inside, outside, clock() - started)


def _split_times(iterator, marks: dict):  # noqa: ANN001, ANN202
    """Yield `iterator`'s tokens, recording the time inside each `next` (genai's work) and
    the time between them (ours)."""
    clock = time.perf_counter
    while True:
        t0 = clock()
        if marks["first_start"] is None:
            marks["first_start"] = t0
        elif marks["last_end"] is not None:
            marks["outside"].append(t0 - marks["last_end"])
        try:
            token = next(iterator)
        except StopIteration:
            return
        t1 = clock()
        marks["inside"].append(t1 - t0)
        marks["last_end"] = t1
        yield token


def ours(path: str, threads: int, max_tokens: int, live: bool) -> dict:
    from pathlib import Path

    from rich.console import Console

    from agentic_onnx.cli import render
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.local import LocalGeneration
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.core.generation.request import ChatRequest
    from agentic_onnx.core.generation.response import Response
    from agentic_onnx.core.models.model_folder import open_model_folder

    loaded = load_model(open_model_folder(Path(path)), "cpu", threads)
    local = LocalGeneration(loaded, keep_prefix=False)  # before the decode loop is wrapped below
    clock = time.perf_counter
    marks: dict = {"inside": [], "outside": [], "last_end": None, "first_start": None}
    original = loaded.generate_tokens

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        return _split_times(original(*args, **kwargs), marks)

    loaded.generate_tokens = timed  # instance attribute: only this object, only this probe
    devnull = open(os.devnull, "w")
    if live:
        console = Console(file=devnull, force_terminal=True, width=100, height=40)
        view = render.LiveMarkdownStream(show_status=True, console=console)
    else:
        def write(text: str) -> None:  # what the output object's `text` does on a pipe
            devnull.write(text)
            devnull.flush()

        view = render.PlainStream(write)
    request = ChatRequest.of([{"role": "user", "content": TASK}],
                             options=build_options(max_tokens=max_tokens))
    response = Response(local.stream(request),
                        provider="onnx", model=loaded.folder.name)
    from agentic_onnx.core.generation.events import TextDelta

    started = clock()
    with view:
        for event in response:
            if isinstance(event, TextDelta):
                view.add(event.text)
    ended = clock()
    sys.stdout = sys.__stdout__
    pre = marks["first_start"] - started
    # Time after the last token (Usage, Finish, the view's exit) counts as outside too.
    marks["outside"].append(ended - marks["last_end"])
    result = summary(pre, marks["inside"], marks["outside"], ended - started)
    result["response_decode_tps"] = response.timings.decode_tokens_per_s
    return result


def cli(path: str, threads: int, max_tokens: int) -> dict:
    """The real `agentic-onnx run` (router, provider, engine, Response, PlainStream) in this
    process, stdout to /dev/null; the engine's decode loop timed as in `ours`."""
    from agentic_onnx.cli.main import main as cli_main
    from agentic_onnx.core.generation import engine

    clock = time.perf_counter
    marks: dict = {"inside": [], "outside": [], "last_end": None, "first_start": None}
    original = engine.LoadedModel.generate_tokens

    def timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return _split_times(original(self, *args, **kwargs), marks)

    engine.LoadedModel.generate_tokens = timed
    sys.argv = ["agentic-onnx", "run", "--model", path, "--task", TASK, "--max-tokens",
                str(max_tokens), "--threads", str(threads)]
    sys.stdout = open(os.devnull, "w")
    started = clock()
    try:
        cli_main()
    except SystemExit:
        pass
    ended = clock()
    sys.stdout = sys.__stdout__
    marks["outside"].append(ended - marks["last_end"])
    # `started` includes loading here, so TTFT is not comparable: report the decode split only.
    result = summary(0.0, marks["inside"], marks["outside"], ended - started)
    result["ttft_ms"] = None
    return result


def summary(pre: float, inside: list[float], outside: list[float], total: float) -> dict:
    return {
        "tokens": len(inside), "pre_ms": pre * 1000, "total_s": total,
        # Request start to the first token: chat template, encoding, generator, prompt, 1 step.
        "ttft_ms": (pre + inside[0]) * 1000,
        "inside_median_us": statistics.median(inside) * 1e6,
        "outside_median_us": statistics.median(outside) * 1e6,
        "outside_mean_us": statistics.fmean(outside) * 1e6,
        "outside_p95_us": sorted(outside)[int(0.95 * (len(outside) - 1))] * 1e6,
        # Decode phase only: the first token's time (prompt processing) is left out.
        "outside_share": sum(outside) / (sum(inside[1:]) + sum(outside)),
        "decode_tps_from_parts": (len(inside) - 1) / (sum(inside[1:]) + sum(outside)),
        "outside_total_ms": sum(outside) * 1000,
        "outside_last_ms": outside[-1] * 1000,  # after the last token: Usage, Finish, wrap-up
        "outside_mean_but_last_us": statistics.fmean(outside[:-1]) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("mode", choices=("bare", "piped", "live", "cli"))
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.mode == "bare":
        result = bare(args.model, args.threads, args.max_tokens)
    elif args.mode == "cli":
        result = cli(args.model, args.threads, args.max_tokens)
    else:
        result = ours(args.model, args.threads, args.max_tokens, live=args.mode == "live")
    sys.stderr.write("PROBE_JSON " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
