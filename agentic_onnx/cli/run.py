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

LOCAL_PROVIDER = "onnx"


def run_command(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="The prompt. '-' (or no --task with piped stdin) reads stdin.")] = None,
    model: ModelOpt = None,
    provider: Annotated[Optional[str], typer.Option("--provider", "-p", help="Provider to use: onnx (local).")] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System message.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Most new tokens Default: 512.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="0 is greedy Default: 0.")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass Default: 1.0.")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample among the k most likely tokens Default: 50.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed for sampling.")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop when this string appears (repeatable).")] = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print load and eval statistics to stderr.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a streamed answer to one prompt with a local ONNX model."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.options import build_options

    options = build_options(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            top_k=top_k, seed=seed, stop=stop)
    if provider is not None and provider.lower() != LOCAL_PROVIDER:
        raise UsageError(f"Unknown provider {provider!r}.",
                         f"This version runs the local provider only: --provider {LOCAL_PROVIDER}.")
    if threads is not None and not 1 <= threads <= 1024:
        raise UsageError(f"Invalid value for --threads: {threads} is not between 1 and 1024.")
    prompt = read_task(task)
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    _generate(model, messages, options, execution_provider, threads, json_output, verbose)


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


def _generate(model_spec, messages, options, execution_provider, threads, json_output, verbose) -> None:  # noqa: ANN001
    from agentic_onnx.cli import render
    from agentic_onnx.core.engine import load_model
    from agentic_onnx.core.resolve import resolve_model
    from agentic_onnx.core.response import Response

    folder = resolve_model(model_spec)
    loaded = load_model(folder, execution_provider, threads)
    for message in loaded.warnings:
        render.warning(message)
    response = Response(loaded.stream(messages, options), provider=LOCAL_PROVIDER,
                        model=folder.name, execution_provider=loaded.execution_provider,
                        load_s=loaded.load_s)
    interrupted = _render_stream(response, json_output)
    if json_output and not interrupted:
        render.print_json(response.to_json())
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
