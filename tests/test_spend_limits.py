"""agentic-flow's routing.costOptimization: maxCostPerRequest drops cloud candidates whose
worst-case cost is over it (nothing is sent to them); budgetAlerts warn once spend reaches them."""

from __future__ import annotations

import json

from agentic_onnx.router.costs import price_table

from .conftest import run_cli
from .router_support import (  # noqa: F401 - fixtures
    FAST_RETRY,
    anthropic_fake,
    cloud_keys,
    openai_fake,
)

SONNET = price_table()["anthropic"]["claude-sonnet-4-5"]
TASK = "Say hello."


def config(home, anthropic, openai, **cost) -> None:  # noqa: ANN001
    (home / "config.json").write_text(json.dumps({
        "defaultProvider": "anthropic", "fallbackChain": ["anthropic", "vllm"],
        "providers": {
            "anthropic": {"apiKey": "${ANTHROPIC_API_KEY}", "baseUrl": anthropic.base_url,
                          "timeout": 5000, "maxRetries": 0},
            "vllm": {"type": "openai", "baseUrl": openai.base_url, "timeout": 5000,
                     "models": {"default": "unpriced-model"}}},
        "routing": {"mode": "rule-based", "rules": [],
                    "costOptimization": {"enabled": True, **cost}},
        "retry": dict(FAST_RETRY)}), encoding="utf-8")


def test_a_candidate_over_max_cost_per_request_is_skipped(hermetic_env, anthropic_fake,  # noqa: F811
                                                          openai_fake, cloud_keys):  # noqa: F811
    # The worst case at 2,000 output tokens is over $0.01 at Sonnet's price; at 10 it is not.
    assert 2000 * SONNET.output / 1e6 > 0.01 > (100 + 10) * max(SONNET.input, SONNET.output) / 1e6
    config(hermetic_env, anthropic_fake, openai_fake, maxCostPerRequest=0.01)
    big = run_cli("-t", TASK, "--max-tokens", "2000", "--json")
    assert big.returncode == 0, big.stderr
    assert json.loads(big.stdout)["provider"] == "vllm"  # unpriced: its cost is unknown, kept
    assert anthropic_fake.requests == []
    assert "Skipped anthropic" in big.stderr and "over maxCostPerRequest $0.01" in big.stderr
    small = run_cli("-t", TASK, "--max-tokens", "10", "--json")
    assert json.loads(small.stdout)["provider"] == "anthropic"
    assert len(anthropic_fake.requests) == 1


def test_a_route_with_nothing_under_the_limit_is_refused(hermetic_env, anthropic_fake,  # noqa: F811
                                                         openai_fake, cloud_keys):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake, maxCostPerRequest=0.01)
    result = run_cli("-t", TASK, "--max-tokens", "2000", "--provider", "anthropic")
    assert result.returncode == 2
    assert "could cost more than maxCostPerRequest" in result.stderr
    assert anthropic_fake.requests == [] and openai_fake.requests == []


def test_a_reached_budget_alert_warns(hermetic_env, anthropic_fake, openai_fake,  # noqa: F811
                                      cloud_keys):  # noqa: F811
    from agentic_onnx.router.usage import UsageRecord, log_request

    log_request(UsageRecord(command="run", provider="anthropic", model="claude-sonnet-4-5",
                            rule=None, private=False, local=False, prompt_tokens=10,
                            completion_tokens=10, cost_usd=5.0, latency_ms=1.0, ttft_ms=1.0,
                            outcome="ok"))
    config(hermetic_env, anthropic_fake, openai_fake, budgetAlerts={"daily": 1.0, "monthly": 100})
    result = run_cli("-t", TASK, "--max-tokens", "10")
    assert result.returncode == 0, result.stderr
    assert "Spent $5.00 on cloud providers today, at or over the daily budget alert of $1" \
        in result.stderr
    assert "this month" not in result.stderr  # $5 is under the monthly alert
