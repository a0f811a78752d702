#!/usr/bin/env python
"""Where a batched greedy answer parts from the same request decoded alone, and how close the
lone run's top two logits were there (a near-tie means batched arithmetic broke a tie).

    python benchmarks/batch_ties.py MODEL [--batch 4] [--tokens 32]

Four prompts (the benchmark task with a client number, as benchmarks/batch_bench.py sends),
decoded together in one generator (right-padded with the pad token, as core/generation/batch.py
does) and each alone. Prints, per prompt, the first step where they differ (or none), the lone
run's top-1 minus top-2 logit there, and the smallest gap before it. By hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TASK = "Write a short story about a robot who learns to paint."


def decode(og, model, rows: list[list[int]], tokens: int):  # noqa: ANN001, ANN201
    """Greedy tokens and the top-1 minus top-2 logit gap at every step, for each row."""
    import numpy as np

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max(map(len, rows)) + tokens, do_sample=False,
                              batch_size=len(rows))
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(rows, dtype=np.int32) if len(rows) > 1 else rows[0])
    out: list[list[int]] = [[] for _ in rows]
    gaps: list[list[float]] = [[] for _ in rows]
    while not generator.is_done():
        generator.generate_next_token()
        chosen, logits = generator.get_next_tokens(), generator.get_output("logits")
        for index in range(len(rows)):
            last = np.asarray(logits[index]).reshape(-1, logits.shape[-1])[-1]
            top = np.sort(last)[-2:]
            out[index].append(int(chosen[index]))
            gaps[index].append(float(top[1] - top[0]))
    return out, gaps


def main() -> int:
    import onnxruntime_genai as og

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    path = Path(args.model)
    model = og.Model(str(path))
    tokenizer = og.Tokenizer(model)
    pad = json.loads((path / "genai_config.json").read_text())["model"]["pad_token_id"]
    prompts = [list(tokenizer.encode(f"<|user|>\n{TASK} ({n})<|end|>\n<|assistant|>\n"))
               for n in range(args.batch)]
    width = max(map(len, prompts))
    batched, _ = decode(og, model, [p + [pad] * (width - len(p)) for p in prompts], args.tokens)
    print("| prompt | first step that differs | lone top-1 - top-2 logit there | "
          "smallest gap before |")
    print("|---:|---:|---:|---:|")
    for index, prompt in enumerate(prompts):
        [alone], [gaps] = decode(og, model, [prompt], args.tokens)
        step = next((k for k, token in enumerate(alone) if batched[index][k] != token), None)
        there = f"{gaps[step]:.4f}" if step is not None else "-"
        before = min(gaps[:step] if step else gaps)
        print(f"| {index} | {step if step is not None else 'none'} | {there} | {before:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
