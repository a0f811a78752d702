"""Human rendering of the router's commands: route explanations, benchmark and usage tables."""

from __future__ import annotations

from typing import Any

from agentic_onnx.cli.output import Output
from agentic_onnx.cli.render import Column, key_value_table


def _or_dash(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def render_decision(out: Output, decision: dict[str, Any], config_path: str | None) -> None:
    """`router explain` / `run --dry-run`: what would happen, and why."""
    private = (f"yes ({decision['privacy_source']})" if decision["private"] else "no")
    order = " -> ".join(c["provider"] for c in decision["candidates"])
    rows = [
        ("provider", decision["provider"]),
        ("model", _or_dash(decision["model"])),
        ("rule", decision["rule"]),
        ("reason", decision["reason"]),
        ("mode", decision["mode"]),
        ("private", private),
        ("complexity", f"{decision['complexity']} ({decision['complexity_source']})"),
        ("try order", order),
    ]
    rows += [("excluded", f"{item['provider']}: {item['why']}") for item in decision["excluded"]]
    if decision["temperature"] is not None:
        rows.append(("temperature", str(decision["temperature"])))
    if decision["max_tokens"] is not None:
        rows.append(("max tokens", str(decision["max_tokens"])))
    rows.append(("config", config_path or "none (defaults from the environment)"))
    out.table(key_value_table("Route (nothing was sent)", rows))


def render_benchmark(out: Output, results: list[dict[str, Any]]) -> None:
    columns = [Column("provider", "left"), Column("model", "left"), Column("ok"),
               Column("TTFT p50 ms"), Column("tokens/s p50"), Column("latency p50 ms", drop_order=2),
               Column("latency p95 ms", drop_order=1), Column("$ / M tokens", drop_order=3)]
    rows = [[result["provider"], _or_dash(result["model"]),
             f"{result['success_rate'] * 100:.0f}% of {result['iterations']}",
             _or_dash(result["ttft_ms_p50"], "{:.1f}"), _or_dash(result["tokens_per_s_p50"], "{:.1f}"),
             _or_dash(result["latency_ms_p50"], "{:.1f}"), _or_dash(result["latency_ms_p95"], "{:.1f}"),
             _or_dash(result["cost_per_million_tokens_usd"], "{:.4f}")] for result in results]
    out.table(out.fitted_table("Router benchmark", columns, rows))
    for result in results:
        for error in result["errors"]:
            out.warning(f"{result['provider']}: {error}")


def render_usage(out: Output, summary: dict[str, Any]) -> None:
    if not summary["lines"]:
        out.note("No requests logged yet.")
    else:
        _render_usage_lines(out, summary)
    if summary.get("budgets"):
        _render_budgets(out, summary["budgets"])


def _render_usage_lines(out: Output, summary: dict[str, Any]) -> None:
    columns = [Column("provider", "left"), Column("model", "left"), Column("requests"),
               Column("ok", drop_order=3), Column("tokens in", drop_order=2),
               Column("tokens out", drop_order=2), Column("cost $"),
               Column("saved $", drop_order=4), Column("latency p50 ms", drop_order=1)]
    rows = []
    for line in summary["lines"]:
        cost = f"{line['cost_usd']:.6f}" + ("*" if line["cost_unknown_requests"] else "")
        rows.append([line["provider"], line["model"], str(line["requests"]), str(line["ok"]),
                     str(line["prompt_tokens"]), str(line["completion_tokens"]), cost,
                     f"{line['saved_usd']:.6f}", _or_dash(line["latency_p50_ms"], "{:.1f}")])
    out.table(out.fitted_table(f"Usage ({summary['period']})", columns, rows))
    totals = summary["totals"]
    out.note(f"Total cost ${totals['cost_usd']:.6f}; local runs saved ${totals['saved_usd']:.6f} "
             f"at {summary['reference']} prices." +
             (" * some requests have no known price." if totals["cost_unknown_requests"] else ""))


def _render_budgets(out: Output, budgets: list[dict[str, Any]]) -> None:
    """routing.costOptimization's budgets: cloud spend of today / this month (UTC) against them."""
    columns = [Column("period", "left"), Column("cloud spend $"), Column("alert $"),
               Column("limit $"), Column("state", "left"), Column("since (UTC)", "left", drop_order=1)]
    rows = [[budget["period"], f"{budget['spent_usd']:.2f}", _or_dash(budget["alert_usd"], "{:g}"),
             _or_dash(budget["limit_usd"], "{:g}"), budget["state"].replace("_", " "),
             budget["since"].replace("T", " ").removesuffix("+00:00")] for budget in budgets]
    out.table(out.fitted_table("Budgets (routing.costOptimization)", columns, rows))
