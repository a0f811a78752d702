"""`agentic-onnx usage`: requests, tokens and cost per provider and model, what local saved, and
the cloud spend against the config's budgets."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt
from agentic_onnx.cli.router import ConfigOpt, config_option

# router.usage.DEFAULT_REFERENCE, spelled out so that --help does not import the usage log
# (tests/test_router_usage.py checks the two agree).
DEFAULT_REFERENCE = "anthropic:claude-sonnet-4-5"


def usage_command(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", metavar="N", min=1,
                                                help="Only the last N days. Default: all.")] = None,
    compare_to: Annotated[str, typer.Option(
        "--compare-to", metavar="PROVIDER:MODEL",
        help="Cloud price that local runs are compared with.")] = DEFAULT_REFERENCE,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Summarise the usage log per provider and model, with the money local runs saved.

    Requests, tokens, cost and latency per provider and model; local runs are also priced at
    a cloud model's price, to show what they saved. With budgets in the config
    (routing.costOptimization budgetAlerts, budgetLimits), today's and this month's cloud
    spend (UTC) against them."""
    from agentic_onnx.cli.router_view import render_usage
    from agentic_onnx.router.config_lookup import load_config, new_warnings
    from agentic_onnx.router.spend_limits import budget_report
    from agentic_onnx.router.usage import cloud_spend_usd, usage_summary

    out, loaded = output.current(), load_config(config_option(ctx, config))
    for warning in new_warnings(loaded):
        out.warning(warning)
    summary = usage_summary(days, compare_to)
    summary["budgets"] = budget_report(loaded.config, cloud_spend_usd)
    out.result(summary, render_usage)
