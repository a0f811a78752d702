"""agentic-flow's `routing.costOptimization` limits, before anything is sent:

- `maxCostPerRequest` (USD): a cloud candidate whose worst-case cost (the prompt's tokens,
  estimated at 4 characters a token, plus `max_tokens`, at the model's price) exceeds it is
  dropped from the route, with a notice; when none is left the request is refused. Local
  candidates cost nothing; a model without a known price is not limited (its cost is unknown).
- `budgetAlerts.daily` / `.monthly` (USD): when the usage log's cloud spend of today (or this
  month, UTC) has reached the alert, a request that may go to the cloud gets a one-line warning.
- `budgetLimits.daily` / `.monthly` (USD, our key): when that spend has reached the limit, every
  cloud candidate is dropped from the route, with a notice; local ones stay, and a route with
  none left is refused (BudgetExceededError).

Limits apply only while `costOptimization.enabled` is not false. A value that is not a positive
number (a string, a bool, zero, negative, infinite) is ignored, as if it were absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.router.errors import BudgetExceededError

CHARS_PER_TOKEN = 4  # a worst-case bound needs no tokenizer: prompts are rarely denser


def _settings(config: Any) -> dict[str, Any]:
    raw = config.routing.cost_optimization
    return raw if isinstance(raw, dict) and raw.get("enabled") is not False else {}


def _usd(value: Any) -> float | None:
    """A limit in USD: a positive, finite number; anything else is no limit."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok and math.isfinite(value) else None


def max_cost_per_request(config: Any) -> float | None:
    return _usd(_settings(config).get("maxCostPerRequest"))


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


PERIODS = ("daily", "monthly")
SPENT_WHEN = {"daily": "today", "monthly": "this month"}


@dataclass(frozen=True)
class Budget:
    """One period's budget: its alert and hard limit (USD; None: not set), from `since` (UTC)."""

    period: str  # daily | monthly
    since: datetime
    alert: float | None
    limit: float | None

    def state(self, spent: float) -> str:
        if self.limit is not None and spent >= self.limit:
            return "limit_reached"
        if self.alert is not None and spent >= self.alert:
            return "alert_reached"
        return "ok"


def budgets(config: Any) -> list[Budget]:
    """The periods with an alert or a limit set (budgetAlerts, budgetLimits), daily first."""
    settings = _settings(config)
    alerts, limits = settings.get("budgetAlerts"), settings.get("budgetLimits")
    alerts, limits = (value if isinstance(value, dict) else {} for value in (alerts, limits))
    now = datetime.now(timezone.utc)
    starts = {"daily": now.replace(hour=0, minute=0, second=0, microsecond=0),
              "monthly": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)}
    found = [Budget(period, starts[period], _usd(alerts.get(period)), _usd(limits.get(period)))
             for period in PERIODS]
    return [budget for budget in found if budget.alert is not None or budget.limit is not None]


def budget_report(config: Any, spent: Callable[[datetime], float]) -> list[dict[str, Any]]:
    """`agentic-onnx usage`'s budgets block: each configured period's cloud spend so far
    (`spent(since)`: the usage log's), its alert and limit, and where the spend stands."""
    report = []
    for budget in budgets(config):
        total = spent(budget.since)
        report.append({"period": budget.period,
                       "since": budget.since.isoformat(timespec="seconds"),
                       "spent_usd": round(total, 6), "alert_usd": budget.alert,
                       "limit_usd": budget.limit, "state": budget.state(total)})
    return report


def narrow_route(decision: Any, kept: list[Any]) -> None:
    """`decision`'s route narrowed to `kept` (never empty): its first is the decision's choice."""
    if kept[0] is not decision.candidates[0]:
        decision.provider, decision.model = kept[0].provider, kept[0].model
    decision.candidates = kept


def within_budget_limits(candidates: list[Any], config: Any, spent: Callable[[datetime], float],
                         notice: Callable[[str], None]) -> list[Any]:
    """The candidates once a reached budget limit has dropped the cloud ones (`candidate.local`
    stay); BudgetExceededError when none is left. Spend is read only for a route that may
    reach the cloud."""
    if all(candidate.local for candidate in candidates):
        return candidates
    for budget in budgets(config):
        if budget.limit is None:
            continue
        total = spent(budget.since)
        if total < budget.limit:
            continue
        kept = [candidate for candidate in candidates if candidate.local]
        if not kept:
            raise BudgetExceededError(budget.period, SPENT_WHEN[budget.period], total, budget.limit)
        skipped = ", ".join(dict.fromkeys(candidate.provider for candidate in candidates
                                          if not candidate.local))
        notice(f"Skipped {skipped}: ${total:.2f} spent on cloud providers "
               f"{SPENT_WHEN[budget.period]}, at or over the {budget.period} budget limit of "
               f"${budget.limit:g} (routing.costOptimization.budgetLimits); answering locally.")
        return kept
    return candidates


def budget_warnings(config: Any, spent: Callable[[datetime], float]) -> list[str]:
    """Warnings for budget alerts already reached (`spent(since)`: the usage log's cost)."""
    warnings = []
    for budget in budgets(config):
        if budget.alert is None:
            continue
        total = spent(budget.since)
        if total >= budget.alert:
            warnings.append(f"Spent ${total:.2f} on cloud providers {SPENT_WHEN[budget.period]}, "
                            f"at or over the {budget.period} budget alert of ${budget.alert:g} "
                            f"(routing.costOptimization).")
    return warnings
