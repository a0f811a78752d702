"""`agentic-onnx router explain|benchmark`, and the routing options `run` shares."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt

router_app = typer.Typer(help="Explain routing decisions and compare providers.",
                         no_args_is_help=True)

ConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", metavar="PATH", help="Router config file, read alone. Default: "
    "$AGENTIC_FLOW_CONFIG, else ~/.agentic-flow/config.json (then agentic-flow's "
    "router.config.json), with a trusted ./agentic-flow.json layered on top.")]
AgentOpt = Annotated[Optional[str], typer.Option(
    "--agent", metavar="TYPE", help="Agent type, matched by rules' agentType (e.g. coder).")]
PrivacyOpt = Annotated[Optional[str], typer.Option(
    "--privacy", metavar="LEVEL", help="high | normal. high: only local providers see the "
    "prompt, whatever the rules or fallback say.")]
LocalOnlyOpt = Annotated[bool, typer.Option(
    "--local-only", help="Only local providers (onnx, or an openai endpoint marked local).")]
ComplexityOpt = Annotated[Optional[str], typer.Option(
    "--complexity", metavar="LEVEL", help="low | medium | high. Default: estimated from the task.")]
ProviderOpt = Annotated[Optional[str], typer.Option(
    "--provider", "-p", metavar="NAME", help="onnx | anthropic | openrouter | a configured "
    "provider. Default: the router decides.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="MODEL", help="Model of the chosen provider, or an alias from "
    "its config models (fast, advanced).")]
TaskOpt = Annotated[str, typer.Option("--task", "-t", metavar="TEXT", help="The prompt.")]


def config_option(ctx: typer.Context, value: str | None) -> str | None:
    """`--config` given to this command, else to the root (`agentic-onnx --config X router ...`)."""
    if value:
        return value
    root = ctx.find_root()
    return root.params.get("config") if root is not ctx else None


@router_app.command("explain")
def explain_command(
    ctx: typer.Context,
    task: TaskOpt,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    agent: AgentOpt = None,
    privacy: PrivacyOpt = None,
    local_only: LocalOnlyOpt = False,
    complexity: ComplexityOpt = None,
    requires_tools: Annotated[bool, typer.Option(
        "--requires-tools", help="The request needs tool calling (rules' requiresTools).")] = False,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show which provider, model and rule would answer TASK, and why. Sends nothing."""
    from agentic_onnx.router.execute import plan_route
    from agentic_onnx.router.rules import RouteFlags

    flags = RouteFlags(provider=provider, model=model, agent=agent, privacy=privacy,
                       local_only=local_only, complexity=complexity,
                       requires_tools=requires_tools)
    from agentic_onnx.core.generation.request import ChatRequest

    loaded, decision = plan_route(ChatRequest.of([{"role": "user", "content": task}]), flags,
                                  config_option(ctx, config), on_notice=output.current().warning)
    show_decision(decision.to_json(), str(loaded.path) if loaded.path else None)


def show_decision(decision: dict[str, Any], config_path: str | None) -> None:
    """`router explain` and `run --dry-run`: the route, with the config it came from."""
    from agentic_onnx.cli.router_view import render_decision

    output.current().result({**decision, "config": config_path, "sent": False},
                            lambda out, _: render_decision(out, decision, config_path))


@router_app.command("benchmark")
def benchmark_command(
    ctx: typer.Context,
    task: TaskOpt = "Write a hello world function in Python.",
    providers: Annotated[str, typer.Option(
        "--providers", metavar="LIST", help="Comma-separated providers, each optionally "
        "PROVIDER:MODEL (onnx:./my-model).")] = "onnx",
    iterations: Annotated[int, typer.Option("--iterations", "-n", metavar="N", min=1, max=10_000,
                                            help="Requests per provider.")] = 5,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", metavar="N",
                                                      help="Most new tokens. Default: 512.")] = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Compare providers on one task: TTFT, tokens/s, latency p50/p95, cost, success rate."""
    from agentic_onnx.cli.router_view import render_benchmark
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.router.benchmark import all_failed_error, run_benchmark

    out = output.current()
    specs = [spec.strip() for spec in providers.split(",") if spec.strip()]
    if not specs:
        raise UsageError("No providers given.", "Pass --providers onnx,anthropic,openrouter.")
    results = run_benchmark(specs, task, iterations, build_options(max_tokens=max_tokens),
                            config_path=config_option(ctx, config), on_notice=out.warning,
                            on_progress=lambda name, number: out.progress(
                                f"{name}: request {number}/{iterations}"))
    data = {"task": task, "iterations": iterations,
            "results": [result.to_json() for result in results]}
    out.result(data, lambda out, data: render_benchmark(out, data["results"]),
               failure=all_failed_error(results))
