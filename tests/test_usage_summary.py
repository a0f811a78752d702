"""`agentic-onnx usage`'s report, computed by router/usage.py (usage_summary) from a real log."""

from __future__ import annotations

import pytest

from agentic_onnx.cli import usage as usage_cli
from agentic_onnx.core.errors import UsageError
from agentic_onnx.router import usage as usage_log


def log(provider: str, model: str, prompt: int, completion: int, cost: float | None,
        local: bool = False, outcome: str = "ok", latency: float | None = 100.0) -> None:
    usage_log.log_request(usage_log.UsageRecord(
        command="run", provider=provider, model=model, rule="default", private=local,
        local=local, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost,
        latency_ms=latency, ttft_ms=None, outcome=outcome))


def test_the_summary_totals_lines_and_prices_local_runs_at_the_reference():
    log("anthropic", "claude-sonnet-4-5", 1000, 100, 0.0045, latency=300.0)
    log("anthropic", "claude-sonnet-4-5", 10, 0, None, outcome="error", latency=None)
    log("onnx", "tiny", 2000, 500, 0.0, local=True, latency=50.0)
    log("onnx", "tiny", 1000, 0, 0.0, local=True, latency=70.0)
    log("openrouter", "some/model", 100, 10, None)
    summary = usage_log.usage_summary(compare_to="anthropic:claude-sonnet-4-5")
    assert (summary["period"], summary["reference"]) == ("all time", "anthropic:claude-sonnet-4-5")
    lines = {line["provider"]: line for line in summary["lines"]}
    assert [line["provider"] for line in summary["lines"]] == ["anthropic", "onnx", "openrouter"]
    # Sonnet 4.5: $3 per million tokens in, $15 out. Local: 3000 in, 500 out.
    assert lines["onnx"]["saved_usd"] == pytest.approx(3000 * 3 / 1e6 + 500 * 15 / 1e6)
    assert lines["onnx"]["latency_p50_ms"] == 60.0
    assert (lines["anthropic"]["requests"], lines["anthropic"]["ok"]) == (2, 1)
    assert lines["openrouter"]["cost_unknown_requests"] == 1
    assert summary["totals"] == {
        "requests": 5, "ok": 4, "prompt_tokens": 4100, "completion_tokens": 610,
        "cost_unknown_requests": 1, "cost_usd": 0.0045,
        "saved_usd": round(3000 * 3 / 1e6 + 500 * 15 / 1e6, 6)}


def test_an_empty_log_and_a_period():
    summary = usage_log.usage_summary(days=7)
    assert summary["period"] == "last 7 days" and summary["lines"] == []
    assert summary["totals"]["requests"] == 0 and summary["totals"]["saved_usd"] == 0


@pytest.mark.parametrize("reference", ["anthropic:no-such-model", "anthropic", "nope:x"])
def test_an_unknown_reference_price_is_a_usage_error(reference):
    with pytest.raises(UsageError, match="No price known") as error:
        usage_log.usage_summary(compare_to=reference)
    assert usage_log.DEFAULT_REFERENCE in error.value.hint


def test_the_cli_default_is_the_routers():
    """cli/usage.py spells the default out (so --help does not import the usage log)."""
    assert usage_cli.DEFAULT_REFERENCE == usage_log.DEFAULT_REFERENCE
