"""`agentic-onnx run` and the seed's root form `agentic-onnx --provider onnx --model M --task T`."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import (
    DebugOpt,
    ExecutionProviderOpt,
    JsonOpt,
    ModelOpt,
    ThreadsOpt,
)
from agentic_onnx.cli.router import AgentOpt, ComplexityOpt, ConfigOpt, LocalOnlyOpt, PrivacyOpt


def run_command(
    task: Annotated[Optional[str], typer.Option("--task", "-t", metavar="TEXT", help="The prompt. '-' (or no --task with piped stdin) reads stdin.")] = None,
    model: ModelOpt = None,
    provider: Annotated[Optional[str], typer.Option("--provider", "-p", metavar="NAME", help="onnx (local), anthropic, openrouter or a provider from the config. Default: the router decides.")] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", metavar="TEXT", help="System message.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", metavar="N", help="Most new tokens. Default: 512.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", metavar="T", help="Sampling temperature; 0 is greedy. Default: 0.")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", metavar="P", help="Nucleus sampling mass. Default: 1.0.")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", metavar="K", help="Sample among the k most likely tokens. Default: 50.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Random seed for sampling.")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", metavar="TEXT", help="Stop when this string appears (repeatable).")] = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print load and eval statistics to stderr.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Download a missing catalog model without asking.")] = False,
    agent: AgentOpt = None,
    privacy: PrivacyOpt = None,
    local_only: LocalOnlyOpt = False,
    complexity: ComplexityOpt = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the route (rule, provider, model, reason) and send nothing.")] = False,
    log_prompts: Annotated[bool, typer.Option("--log-prompts", help="Also store the prompt text in the usage log.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a streamed answer to one prompt: a local ONNX model, or the provider the router picks."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.options import build_options
    from agentic_onnx.router.rules import RouteFlags

    options = build_options(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            top_k=top_k, seed=seed, stop=stop)
    if threads is not None and not 1 <= threads <= 1024:
        raise UsageError(f"Invalid value for --threads: {threads} is not between 1 and 1024.")
    prompt = read_task(task)
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    route = RouteFlags(provider=provider, model=model, agent=agent, privacy=privacy,
                       local_only=local_only, complexity=complexity)
    _generate(messages, options, route, execution_provider=execution_provider, threads=threads,
              json_output=json_output, verbose=verbose, assume_yes=yes, config=config,
              dry_run=dry_run, log_prompts=log_prompts)


def read_task(task: str | None) -> str:
    """`--task TEXT`, `--task -` or piped stdin; an empty prompt is a usage error."""
    from agentic_onnx.core.errors import UsageError

    if task == "-" or (task is None and not sys.stdin.isatty()):
        task = sys.stdin.read()
    if task is None:
        raise UsageError("No task given.", 'Pass --task "..." or pipe the prompt on stdin.')
    if not task.strip():
        raise UsageError("The task is empty.", 'Pass a non-empty --task "...".')
    return task


def _generate(messages, options, route, *, execution_provider: str, threads: int | None,  # noqa: ANN001
              json_output: bool, verbose: bool, assume_yes: bool, config: str | None,
              dry_run: bool, log_prompts: bool) -> None:
    """Route the request, stream the answer into the right view, report."""
    from agentic_onnx.cli import render
    from agentic_onnx.cli.store_commands import resolve_for_run
    from agentic_onnx.router.execute import route_and_stream

    routed = route_and_stream(
        messages, route, options, config_path=config,
        execution_provider=execution_provider, threads=threads, dry_run=dry_run,
        log_prompts=log_prompts, on_notice=render.warning,
        resolve_local=lambda spec: resolve_for_run(spec, assume_yes))  # ids, aliases, paths; offers a download
    if routed.response is None:  # --dry-run
        from agentic_onnx.cli.router import show_decision

        show_decision(routed.decision.to_json(), str(routed.config_path or "") or None, json_output)
        return
    response = routed.response
    interrupted = _render_stream(response, json_output)
    if json_output and not interrupted:
        render.print_json(routed.to_json())
    if verbose:
        usage = response.usage
        render.verbose_stats(usage.prompt_tokens if usage else 0,
                             usage.completion_tokens if usage else 0, response.timings)
    if interrupted:
        render.note("Interrupted.")
        raise typer.Exit(130)


def _render_stream(response, json_output: bool) -> bool:  # noqa: ANN001
    """Consume the response into the right view; True when Ctrl-C stopped it."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.events import TextDelta

    if json_output:
        view = None
    elif render.stdout_is_terminal():
        view = render.LiveMarkdownStream(show_status=sys.stderr.isatty())
    else:
        view = render.PlainStream()
    try:
        if view is None:
            response.consume()
            return False
        with view:
            for event in response:
                if isinstance(event, TextDelta):
                    view.add(event.text)
    except KeyboardInterrupt:
        return True
    return False
