#!/usr/bin/env python
"""KV-cache slots: prompt tokens computed when three agents interleave their conversations.

    python benchmarks/kv_slots.py [--model PATH] [--agents 3] [--turns 4] [--slots 1 3]
                                  [--max-tokens 16] [--threads 2]

Each agent sends its whole conversation every turn (as agents do), one agent after the other on
one model, through core.generation.local.LocalGeneration (what `serve` runs; one tenant). For
each slot count, the prompt tokens the model had to compute per turn (`prompt_tokens -
cached_tokens`, the usage `serve` reports) and the totals. A count, not a timing: the machine's
load does not change it. Greedy, so both runs see the same answers.

The model defaults to the tiny fixture; `--model benchmarks/models/phi3-mini-shape` (if built
by benchmarks/make_shapes.py) runs the same on the Phi-3-mini shape (slow on 2 cores). Prints a
Markdown table, then one JSON line with the totals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "models" / "tiny-phi3-fp32"
QUESTIONS = ["Summarise the build log: two tests were slow, one failed.",
             "Which test failed, and why?",
             "Propose a fix for the failing test.",
             "Write the commit message for that fix."]


def run(model, slots: int, agents: int, turns: int, max_tokens: int) -> list[list[tuple[int, int]]]:  # noqa: ANN001
    """Per turn, per agent: (prompt tokens, cached tokens)."""
    from agentic_onnx.core.generation.events import TextDelta, Usage
    from agentic_onnx.core.generation.local import LocalGeneration
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.core.generation.request import ChatRequest

    local = LocalGeneration(model, slots=slots)
    options = build_options(max_tokens=max_tokens)
    histories = [[{"role": "system", "content": f"You are agent {index + 1}, a build assistant."}]
                 for index in range(agents)]
    rows = []
    for turn in range(turns):
        row = []
        for history in histories:
            history.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            events = list(local.stream(ChatRequest.of(history, options=options)))
            usage = next(event for event in events if isinstance(event, Usage))
            history.append({"role": "assistant", "content": "".join(
                event.text for event in events if isinstance(event, TextDelta))})
            row.append((usage.prompt_tokens, usage.cached_tokens))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.generation.kv_budget import kv_layout
    from agentic_onnx.core.models.model_folder import open_model_folder

    model = load_model(open_model_folder(args.model), "cpu", args.threads)
    layout = kv_layout(model)
    results = {slots: run(model, slots, args.agents, args.turns, args.max_tokens)
               for slots in args.slots}
    if layout is not None:
        print(f"{args.model.name}: KV cache {layout.bytes_per_token:,} bytes per token, "
              f"{layout.slot_bytes(0) / 2**20:,.1f} MiB per slot"
              f"{' (the whole context, preallocated)' if layout.preallocated else ''}\n")
    head = "| turn | agent | prompt tokens |" + "".join(
        f" computed, {slots} slot{'s' if slots > 1 else ''} |" for slots in args.slots)
    print(head)
    print("|" + " ---: |" * (3 + len(args.slots)))
    first = results[args.slots[0]]
    for turn in range(args.turns):
        for agent in range(args.agents):
            prompt = first[turn][agent][0]
            cells = "".join(f" {results[s][turn][agent][0] - results[s][turn][agent][1]} |"
                            for s in args.slots)
            print(f"| {turn + 1} | {agent + 1} | {prompt} |{cells}")
    totals = {slots: (sum(p for row in rows for p, _ in row),
                      sum(p - c for row in rows for p, c in row)) for slots, rows in results.items()}
    print("| all | | " + str(totals[args.slots[0]][0]) + " |"
          + "".join(f" **{computed}** |" for _, computed in totals.values()))
    print(json.dumps({"model": args.model.name, "agents": args.agents, "turns": args.turns,
                      "max_tokens": args.max_tokens,
                      "computed": {str(s): computed for s, (_, computed) in totals.items()},
                      "prompt_tokens": {str(s): prompt for s, (prompt, _) in totals.items()}}))


if __name__ == "__main__":
    main()
