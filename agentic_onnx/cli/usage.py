"""`agentic-onnx usage`: requests, tokens and cost per provider and model, and what local saved."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt

# router.usage.DEFAULT_REFERENCE, spelled out so that --help does not import the usage log
# (tests/test_router_usage.py checks the two agree).
DEFAULT_REFERENCE = "anthropic:claude-sonnet-4-5"


def usage_command(
    days: Annotated[Optional[int], typer.Option("--days", metavar="N", min=1,
                                                help="Only the last N days. Default: all.")] = None,
    compare_to: Annotated[str, typer.Option(
        "--compare-to", metavar="PROVIDER:MODEL",
        help="Cloud price that local runs are compared with.")] = DEFAULT_REFERENCE,
    json_output: JsonOpt = False,
) -> None:
    """Summarise the usage log per provider and model, with the money local runs saved.

    Requests, tokens, cost and latency per provider and model; local runs are also priced at
    a cloud model's price, to show what they saved."""
    from agentic_onnx.cli.router_view import render_usage
    from agentic_onnx.router.usage import usage_summary

    output.current().result(usage_summary(days, compare_to), render_usage)
