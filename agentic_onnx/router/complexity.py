"""Estimating a task's complexity (low | medium | high) when `--complexity` is not given.

The heuristic, in order (documented in docs/router.md; the tests pin each branch):
1. high   if the task has more than 250 words, or at least two "hard" signals: words such as
          architect, design, prove, refactor, optimize, analyze, debug, trade-off, step by step,
          implement, or a fenced code block, or more than 3 numbered/bulleted requirements;
2. low    if it has at most 30 words, no hard signal and no code;
3. medium otherwise.
It is deliberately cheap and predictable: it runs before every routed request, and a user who
disagrees passes `--complexity`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HIGH_WORDS = 250
LOW_WORDS = 30
HARD_SIGNALS = (
    "architect", "design", "prove", "proof", "refactor", "optimiz", "optimis", "analyz",
    "analys", "debug", "trade-off", "tradeoff", "step by step", "implement", "algorithm",
    "concurren", "distributed", "security", "migrate",
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+", re.MULTILINE)


@dataclass(frozen=True)
class ComplexityEstimate:
    level: str
    reason: str


def estimate_complexity(task: str) -> ComplexityEstimate:
    words = len(task.split())
    lowered = task.lower()
    signals = [signal for signal in HARD_SIGNALS if signal in lowered]
    has_code = "```" in task
    if has_code:
        signals.append("code block")
    if len(_LIST_ITEM.findall(task)) > 3:
        signals.append("several listed requirements")
    if words > HIGH_WORDS:
        return ComplexityEstimate("high", f"{words} words (> {HIGH_WORDS})")
    if len(signals) >= 2:
        return ComplexityEstimate("high", "signals: " + ", ".join(signals[:4]))
    if words <= LOW_WORDS and not signals:
        return ComplexityEstimate("low", f"{words} words, no hard signals")
    detail = f"signal: {signals[0]}" if signals else f"{words} words"
    return ComplexityEstimate("medium", detail)
