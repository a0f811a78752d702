"""`agentic-onnx usage`: requests, tokens and cost per provider and model, and what local saved."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt

DEFAULT_REFERENCE = "anthropic:claude-sonnet-4-5"


def usage_command(
    days: Annotated[Optional[int], typer.Option("--days", metavar="N", min=1,
                                                help="Only the last N days. Default: all.")] = None,
    compare_to: Annotated[str, typer.Option(
        "--compare-to", metavar="PROVIDER:MODEL",
        help="Cloud price that local runs are compared with.")] = DEFAULT_REFERENCE,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Summarise the usage log per provider and model, with the money local runs saved.

    Requests, tokens, cost and latency per provider and model; local runs are also priced at
    a cloud model's price, to show what they saved."""
    from datetime import datetime, timedelta, timezone

    from agentic_onnx.cli import render
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.costs import lookup_price
    from agentic_onnx.router.usage import rows, summarize

    kind, _, model = compare_to.partition(":")
    reference = lookup_price(kind, model) if model else None
    if reference is None:
        raise UsageError(f"No price known for {compare_to!r}.",
                         f"Use PROVIDER:MODEL from the price table, e.g. {DEFAULT_REFERENCE}.")
    since = datetime.now(timezone.utc) - timedelta(days=days) if days else None
    lines = [line.to_json() for line in summarize(rows(since), reference)]
    totals = {key: sum(line[key] for line in lines) for key in
              ("requests", "ok", "prompt_tokens", "completion_tokens", "cost_unknown_requests")}
    totals["cost_usd"] = round(sum(line["cost_usd"] for line in lines), 6)
    totals["saved_usd"] = round(sum(line["saved_usd"] for line in lines), 6)
    summary = {"period": f"last {days} days" if days else "all time", "reference": compare_to,
               "lines": lines, "totals": totals}
    if json_output:
        render.print_json(summary)
        return
    if not lines:
        render.note("No requests logged yet.")
        return
    from agentic_onnx.cli.router_view import render_usage

    render_usage(summary)
