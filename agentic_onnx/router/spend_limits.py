"""agentic-flow's `routing.costOptimization` limits, before anything is sent:

- `maxCostPerRequest` (USD): a cloud candidate whose worst-case cost (the prompt's tokens,
  estimated at 4 characters a token, plus `max_tokens`, at the model's price) exceeds it is
  dropped from the route, with a notice; when none is left the request is refused. Local
  candidates cost nothing; a model without a known price is not limited (its cost is unknown).
- `budgetAlerts.daily` / `.monthly` (USD): when the usage log's spend of today (or this month,
  UTC) has reached the alert, a request that may go to the cloud gets a one-line warning.

Limits apply only while `costOptimization.enabled` is not false.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.request import ChatRequest

CHARS_PER_TOKEN = 4  # a worst-case bound needs no tokenizer: prompts are rarely denser


def _settings(config: Any) -> dict[str, Any]:
    raw = config.routing.cost_optimization
    return raw if isinstance(raw, dict) and raw.get("enabled") is not False else {}


def max_cost_per_request(config: Any) -> float | None:
    value = _settings(config).get("maxCostPerRequest")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok and math.isfinite(value) else None


def estimated_prompt_tokens(request: ChatRequest) -> int:
    text = json.dumps(list(request.messages), ensure_ascii=False) + \
        json.dumps(request.openai_tools(), ensure_ascii=False)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def within_cost_limit(candidates: list[Any], request: ChatRequest, limit: float,
                      worst_case: Callable[[Any, int], float | None],
                      notice: Callable[[str], None]) -> list[Any]:
    """The candidates whose worst-case cost fits `limit`; `worst_case(candidate, prompt_tokens)`
    is None when the price is unknown (kept)."""
    prompt = estimated_prompt_tokens(request)
    kept, dropped = [], []
    for candidate in candidates:
        cost = worst_case(candidate, prompt)
        (dropped if cost is not None and cost > limit else kept).append((candidate, cost))
    for candidate, cost in dropped:
        notice(f"Skipped {candidate.provider} ({candidate.model}): up to ${cost:.4f} for this "
               f"request, over maxCostPerRequest ${limit:g}.")
    if not kept:
        raise UsageError(f"Every provider of the route could cost more than maxCostPerRequest "
                         f"(${limit:g}) for this request.",
                         "Lower --max-tokens, shorten the prompt, or raise the limit.")
    return [candidate for candidate, _ in kept]


def budget_warnings(config: Any, spent: Callable[[datetime], float]) -> list[str]:
    """Warnings for budget alerts already reached (`spent(since)`: the usage log's cost)."""
    alerts = _settings(config).get("budgetAlerts")
    if not isinstance(alerts, dict):
        return []
    now = datetime.now(timezone.utc)
    starts = {"daily": now.replace(hour=0, minute=0, second=0, microsecond=0),
              "monthly": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}
    warnings = []
    for period, since in starts.items():
        alert = alerts.get(period)
        if isinstance(alert, (int, float)) and not isinstance(alert, bool) and alert > 0:
            total = spent(since)
            if total >= alert:
                label = "today" if period == "daily" else "this month"
                warnings.append(f"Spent ${total:.2f} on cloud providers {label}, at or over the "
                                f"{period} budget alert of ${alert:g} (routing.costOptimization).")
    return warnings
