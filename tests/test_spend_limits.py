"""agentic-flow's routing.costOptimization: maxCostPerRequest drops cloud candidates whose
worst-case cost is over it (nothing is sent to them); budgetAlerts warn once spend reaches them;
our budgetLimits drop every cloud candidate once the usage log's cloud spend reaches them, and
`usage` shows the spend against the budgets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from agentic_onnx.router import usage as usage_log
from agentic_onnx.router.costs import price_table

from .conftest import run_cli
from .router_support import (  # noqa: F401 - fixtures
    FAST_RETRY,
    TINY,
    anthropic_fake,
    cloud_keys,
    openai_fake,
)
from .server_support import Server, http

SONNET = price_table()["anthropic"]["claude-sonnet-4-5"]
TASK = "Say hello."


def config(home, anthropic, openai, local_vllm: bool = False, **cost) -> None:  # noqa: ANN001
    """Anthropic first, then `vllm` (the OpenAI fake on loopback; `local_vllm`: marked local)."""
    (home / "config.json").write_text(json.dumps({
        "defaultProvider": "anthropic", "fallbackChain": ["anthropic", "vllm"],
        "providers": {
            "anthropic": {"apiKey": "${ANTHROPIC_API_KEY}", "baseUrl": anthropic.base_url,
                          "timeout": 5000, "maxRetries": 0},
            "vllm": {"type": "openai", "baseUrl": openai.base_url, "timeout": 5000,
                     "models": {"default": "unpriced-model"}, "local": local_vllm}},
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


# -- budgetLimits -------------------------------------------------------------------------------


def spend(cost: float, local: bool = False, ago: timedelta = timedelta(0)) -> datetime:
    """A usage row `ago` before now that cost `cost`; its time, for the test's own sums."""
    usage_log.log_request(usage_log.UsageRecord(
        command="run", provider="onnx" if local else "anthropic", model="claude-sonnet-4-5",
        rule=None, private=False, local=local, prompt_tokens=10, completion_tokens=10,
        cost_usd=cost, latency_ms=1.0, ttft_ms=1.0, outcome="ok"))
    at = datetime.now(timezone.utc) - ago
    with usage_log.connect() as connection:
        connection.execute("UPDATE requests SET ts = ? WHERE id = (SELECT max(id) FROM requests)",
                           (at.isoformat(timespec="milliseconds"),))
    return at


def test_a_reached_daily_limit_answers_locally_and_sends_nothing_to_the_cloud(
        hermetic_env, anthropic_fake, openai_fake, cloud_keys):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake, local_vllm=True,
           budgetLimits={"daily": 5})
    spend(4.0)
    spend(3.0, local=True)  # a local row's cost is never cloud spend
    under = run_cli("-t", TASK, "--max-tokens", "10", "--json")
    assert json.loads(under.stdout)["provider"] == "anthropic", under.stderr
    assert len(anthropic_fake.requests) == 1 and "budget limit" not in under.stderr
    spend(1.5)  # $5.50 spent today
    over = run_cli("-t", TASK, "--max-tokens", "10", "--json")
    assert over.returncode == 0, over.stderr
    assert json.loads(over.stdout)["provider"] == "vllm"
    assert len(anthropic_fake.requests) == 1  # nothing more sent to the cloud
    assert len(openai_fake.requests) == 1
    assert ("Skipped anthropic: $5.50 spent on cloud providers today, at or over the daily "
            "budget limit of $5 (routing.costOptimization.budgetLimits)") in over.stderr


def test_a_cloud_only_route_past_the_limit_is_refused_with_exit_4(
        hermetic_env, anthropic_fake, openai_fake, cloud_keys):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake, local_vllm=True,
           budgetLimits={"daily": 2.5})
    spend(2.5)
    result = run_cli("-t", TASK, "--provider", "anthropic", "--json")
    assert result.returncode == 4
    answer = json.loads(result.stdout)
    assert answer["error"]["type"] == "BudgetExceededError"
    assert answer["error"]["exit_code"] == 4
    assert "$2.50 spent on cloud providers today, at or over the daily budget limit of $2.5" \
        in answer["error"]["message"]
    assert "budgetLimits.daily" in answer["error"]["hint"]
    assert answer["budget"] == {"period": "daily", "spent_usd": 2.5, "limit_usd": 2.5}
    assert anthropic_fake.requests == [] and openai_fake.requests == []
    assert len(usage_log.rows()) == 1  # a refused request is not logged as one sent


def test_the_monthly_limit_counts_this_month_and_local_requests_are_still_answered(
        hermetic_env, anthropic_fake, openai_fake, cloud_keys):  # noqa: F811
    now = datetime.now(timezone.utc)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spend(2.0)
    spend(50.0, ago=now - month_start + timedelta(hours=1))  # last month: not counted
    config(hermetic_env, anthropic_fake, openai_fake, local_vllm=True,
           budgetLimits={"daily": 100, "monthly": 2})
    result = run_cli("-t", TASK, "--provider", "anthropic")
    assert result.returncode == 4
    assert "$2.00 spent on cloud providers this month, at or over the monthly budget limit " \
        "of $2" in result.stderr
    local = run_cli("-t", TASK, "--provider", "vllm", "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["provider"] == "vllm" and "Skipped" not in local.stderr
    private = run_cli("-t", TASK, "--privacy", "high", "--json")
    assert json.loads(private.stdout)["provider"] == "vllm", private.stderr
    assert anthropic_fake.requests == [] and len(openai_fake.requests) == 2


@pytest.mark.parametrize("limits", [{"daily": -1, "monthly": 0}, {"daily": "1", "monthly": True},
                                    [1, 2], {"weekly": 1}])
def test_a_limit_that_is_not_a_positive_number_is_ignored(hermetic_env, anthropic_fake,
                                                          openai_fake, cloud_keys, limits):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake, budgetLimits=limits)
    spend(10.0)
    result = run_cli("-t", TASK, "--max-tokens", "10", "--json")
    assert json.loads(result.stdout)["provider"] == "anthropic", result.stderr
    assert "not used yet" not in result.stderr  # budgetLimits is a key we act on
    assert json.loads(run_cli("usage", "--json").stdout)["budgets"] == []


def test_usage_shows_cloud_spend_against_the_budgets(hermetic_env, anthropic_fake,
                                                     openai_fake):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake,
           budgetAlerts={"daily": 1, "monthly": 500}, budgetLimits={"monthly": 9})
    costs = [(1.25, False, timedelta(0)), (0.5, False, timedelta(minutes=1)),
             (4.0, True, timedelta(0)), (2.0, False, timedelta(days=2)),
             (7.0, False, timedelta(days=40))]
    written = [(cost, local, spend(cost, local, ago)) for cost, local, ago in costs]
    now = datetime.now(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    expected = {period: sum(cost for cost, local, at in written if at >= since and not local)
                for period, since in (("daily", day), ("monthly", month))}
    result = run_cli("usage", "--json")
    assert result.returncode == 0, result.stderr
    budgets = json.loads(result.stdout)["budgets"]
    assert [budget["period"] for budget in budgets] == ["daily", "monthly"]
    daily, monthly = budgets
    assert daily["spent_usd"] == pytest.approx(expected["daily"])
    assert monthly["spent_usd"] == pytest.approx(expected["monthly"])
    assert (daily["alert_usd"], daily["limit_usd"], daily["state"]) == \
        (1.0, None, "alert_reached")
    assert (monthly["alert_usd"], monthly["limit_usd"], monthly["state"]) == \
        (500.0, 9.0, "limit_reached" if expected["monthly"] >= 9 else "ok")
    assert daily["since"] == day.isoformat(timespec="seconds")
    human = run_cli("usage")
    assert "Budgets" in human.stdout and "alert reached" in human.stdout
    assert f"{expected['daily']:.2f}" in human.stdout
    spend(9.0, False, timedelta(0))  # today's spend alone now crosses the monthly limit
    monthly = json.loads(run_cli("usage", "--json").stdout)["budgets"][1]
    assert (monthly["spent_usd"], monthly["state"]) == \
        (pytest.approx(expected["monthly"] + 9.0), "limit_reached")


def test_usage_without_budgets_says_nothing_about_them(hermetic_env, anthropic_fake,
                                                       openai_fake):  # noqa: F811
    config(hermetic_env, anthropic_fake, openai_fake)
    spend(1.0)
    assert json.loads(run_cli("usage", "--json").stdout)["budgets"] == []
    human = run_cli("usage")
    assert human.returncode == 0 and "Budgets" not in human.stdout + human.stderr


def test_usage_reads_the_config_named_by_config(hermetic_env, anthropic_fake,
                                                openai_fake, tmp_path):  # noqa: F811
    config(tmp_path, anthropic_fake, openai_fake, budgetLimits={"daily": 3})
    result = run_cli("usage", "--json", "--config", str(tmp_path / "config.json"))
    assert json.loads(result.stdout)["budgets"][0]["limit_usd"] == 3.0, result.stderr


def test_serve_route_answers_402_budget_exceeded(hermetic_env, anthropic_fake,
                                                  cloud_keys):  # noqa: F811
    (hermetic_env / "config.json").write_text(json.dumps({
        "defaultProvider": "anthropic", "fallbackChain": ["anthropic"],
        "providers": {"anthropic": {"apiKey": "${ANTHROPIC_API_KEY}",
                                    "baseUrl": anthropic_fake.base_url, "maxRetries": 0}},
        "routing": {"mode": "rule-based", "rules": [],
                    "costOptimization": {"budgetLimits": {"daily": 1}}}}), encoding="utf-8")
    spend(1.0)
    served = Server("--model", str(TINY), "--threads", "1", "--route").start()
    try:
        hello = [{"role": "user", "content": "Say hello."}]
        status, _, answer = http("POST", f"{served.url}/v1/chat/completions",
                                 {"model": "claude-haiku-4-5", "messages": hello,
                                  "max_tokens": 4})
        status_anthropic, _, anthropic_answer = http(
            "POST", f"{served.url}/v1/messages",
            {"model": "claude-haiku-4-5", "messages": hello, "max_tokens": 4})
    finally:
        served.stop()
    assert status == 402, answer
    assert answer["error"]["code"] == "budget_exceeded"
    assert "daily budget limit of $1" in answer["error"]["message"]
    assert status_anthropic == 402 and anthropic_answer["error"]["type"] == "billing_error"
    assert anthropic_fake.requests == []
