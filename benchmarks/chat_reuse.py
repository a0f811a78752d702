#!/usr/bin/env python
"""KV-cache reuse in `chat`, and `serve` under concurrent clients.

    python benchmarks/chat_reuse.py chat   [--models M ...] [--turns 10] [--repeats 3]
    python benchmarks/chat_reuse.py serve  [--models M ...] [--concurrency 1 4 8] [--max-tokens 32]
    python benchmarks/chat_reuse.py engine [--models M ...] [--concurrency 1 4 8] [--max-tokens 32]

`chat`: a 10-turn conversation through core.generation.conversation (KV cache kept), and, for the same
history before each turn, a fresh generation that re-encodes the whole history
(LoadedModel.stream). TTFT as core.generation.response measures it; median over `--repeats` runs.

`serve`: a real `agentic-onnx serve` subprocess, N streaming clients at once (the OpenAI
client), each with its own prompt; aggregate completion tokens/s and median TTFT.

`engine`: the two ways a server can share one model, without HTTP: the bounded queue `serve`
uses (one generator at a time) against onnxruntime-genai's continuous-batching `og.Engine`,
same prompts, greedy, with whether their outputs are identical.

Models default to the tiny fixture and whatever benchmarks/models/* holds (built by
benchmarks/make_shapes.py). Prints one JSON object per measurement (one line each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = [ROOT / "tests" / "fixtures" / "models" / "tiny-phi3-fp32",
                  *sorted(p for p in (ROOT / "benchmarks" / "models").glob("fast-*") if p.is_dir())]
USER_TURN = "Summarise the next part of the report: the build passed, two tests were slow."


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def load(path: Path, threads: int):
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder

    return load_model(open_model_folder(path), "cpu", threads)


def ttft_ms(events) -> tuple[float, object]:
    from agentic_onnx.core.generation.response import Response

    response = Response(events, "onnx", "bench").consume()
    return response.timings.ttft_ms or float("nan"), response


def bench_chat(path: Path, turns: int, repeats: int, max_tokens: int, threads: int) -> None:
    from agentic_onnx.core.generation.conversation import Conversation
    from agentic_onnx.core.generation.options import build_options

    model = load(path, threads)
    options = build_options(max_tokens=max_tokens)
    reuse: dict[int, list[float]] = {}
    fresh: dict[int, list[float]] = {}
    prompt_tokens: dict[int, int] = {}
    reused_tokens: dict[int, int] = {}
    for _ in range(repeats):
        conversation = Conversation(model, system="You are a concise assistant.")
        for turn in range(1, turns + 1):
            reuse.setdefault(turn, []).append(
                ttft_ms(conversation.send(f"{turn}. {USER_TURN}", options))[0])
            history = conversation.messages[:-1]  # what that turn saw, after any dropping
            fresh.setdefault(turn, []).append(ttft_ms(model.stream(history, options))[0])
            prompt_tokens[turn] = conversation.last.prompt_tokens
            reused_tokens[turn] = conversation.last.reused_tokens
    for turn in sorted({2, turns} & set(reuse)):
        with_reuse, re_encoded = statistics.median(reuse[turn]), statistics.median(fresh[turn])
        emit({"bench": "chat", "model": path.name, "turn": turn, "threads": threads,
              "prompt_tokens": prompt_tokens[turn], "reused_tokens": reused_tokens[turn],
              "ttft_ms_reuse": round(with_reuse, 2), "ttft_ms_reencode": round(re_encoded, 2),
              "speedup": round(re_encoded / with_reuse, 2), "repeats": repeats})


def bench_serve(path: Path, levels: list[int], max_tokens: int, threads: int) -> None:
    import openai

    sys.path.insert(0, str(ROOT))
    from tests.server_support import Server

    server = Server("--model", str(path), "--threads", str(threads), "--max-queue", "64").start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=600)

        def one(index: int) -> tuple[float, int]:
            started = time.perf_counter()
            first, tokens = None, 0
            stream = client.chat.completions.create(
                model=path.name, max_tokens=max_tokens, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": f"Request {index}: {USER_TURN}"}])
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - started
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
            return (first or float("nan")) * 1000, tokens

        one(-1)  # warm-up
        for level in levels:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=level) as pool:
                results = list(pool.map(one, range(level * 2)))  # two rounds of `level` clients
            wall = time.perf_counter() - started
            emit({"bench": "serve", "model": path.name, "concurrency": level, "threads": threads,
                  "requests": len(results), "max_tokens": max_tokens,
                  "tokens_per_s": round(sum(t for _, t in results) / wall, 1),
                  "ttft_ms_median": round(statistics.median(ms for ms, _ in results), 1)})
    finally:
        server.stop()


def bench_engine(path: Path, levels: list[int], max_tokens: int, threads: int,
                 repeats: int) -> None:
    import onnxruntime_genai as og

    from agentic_onnx.core.generation.options import build_options

    model = load(path, threads)
    options = build_options(max_tokens=max_tokens)
    prompts = [model.encode(model.render_prompt([{"role": "user", "content": f"Request {i}: {USER_TURN}"}]))
               for i in range(max(levels))]

    def queued(batch: list[list[int]]) -> list[list[int]]:
        return [list(model.generate_tokens(ids, options))[:max_tokens] for ids in batch]

    def batched(batch: list[list[int]]) -> list[list[int]]:
        engine = og.Engine(model.og_model)
        buffer = engine.create_event_buffer(256)
        outputs: dict[int, list[int]] = {}
        requests = []
        for ids in batch:
            request = engine.create_request()
            turn = og.TurnOptions(request)
            turn.set_max_generated_tokens(max_tokens)
            turn.set_temperature(0.0)
            request.begin_turn(ids, turn)
            requests.append(request)
            outputs[id(request)] = []
        while engine.has_pending_requests():
            engine.run(buffer)
            for index in range(len(buffer)):
                event = buffer[index]
                if int(event.flags) & int(og.EngineEventFlags.TOKEN):
                    outputs[id(event.request)].append(int(event.token))
        return [outputs[id(r)] for r in requests]

    queued(prompts[:1])
    batched(prompts[:1])
    for level in levels:
        batch = prompts[:level]
        timings: dict[str, list[float]] = {"queue": [], "og_engine": []}
        results = {}
        for repeat in range(repeats):  # interleaved, so load from others hits both alike
            runs = (("queue", queued), ("og_engine", batched))
            for name, run in runs if repeat % 2 == 0 else runs[::-1]:
                started = time.perf_counter()
                results[name] = run(batch)
                timings[name].append(time.perf_counter() - started)
        rate = {name: level * max_tokens / statistics.median(times) for name, times in timings.items()}
        emit({"bench": "engine", "model": path.name, "concurrency": level, "threads": threads,
              "max_tokens": max_tokens, "repeats": repeats,
              "queue_tokens_per_s": round(rate["queue"], 1),
              "og_engine_tokens_per_s": round(rate["og_engine"], 1),
              "identical_outputs": sum(a == b for a, b in zip(results["queue"], results["og_engine"])),
              "of": level})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=["chat", "serve", "engine"])
    parser.add_argument("--models", nargs="*", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", nargs="*", type=int, default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for path in args.models:
        if args.bench == "chat":
            bench_chat(path, args.turns, args.repeats, args.max_tokens, args.threads)
        elif args.bench == "serve":
            bench_serve(path, args.concurrency, args.max_tokens, args.threads)
        else:
            bench_engine(path, args.concurrency, args.max_tokens, args.threads, args.repeats)


if __name__ == "__main__":
    main()
