"""`agentic-onnx run` and the seed's root form `agentic-onnx --provider onnx --model M --task T`."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli.options import (
    AdapterOpt,
    DeviceIdOpt,
    ExecutionProviderOpt,
    JsonOpt,
    MaxTokensOpt,
    ModelOpt,
    NoServiceOpt,
    SeedOpt,
    StopOpt,
    SystemOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    VerboseOpt,
    YesOpt,
)
from agentic_onnx.cli.router import AgentOpt, ComplexityOpt, ConfigOpt, LocalOnlyOpt, PrivacyOpt


def run_command(
    task: Annotated[Optional[str], typer.Option("--task", "-t", metavar="TEXT", help="The prompt. '-' (or no --task with piped stdin) reads stdin.")] = None,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    provider: Annotated[Optional[str], typer.Option("--provider", "-p", metavar="NAME", help="onnx (local), anthropic, openrouter or a provider from the config. Default: the router decides.")] = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    schema: Annotated[Optional[str], typer.Option("--schema", metavar="FILE|JSON", help="Answer with JSON valid for this JSON Schema (a file, or inline JSON). Local models are constrained while decoding; exit 1 when the answer is cut off or invalid.")] = None,
    json_mode: Annotated[bool, typer.Option("--json-mode", help="Answer with any JSON object (--schema for {\"type\": \"object\"}).")] = False,
    tools: Annotated[Optional[str], typer.Option("--tools", metavar="FILE", help="Tools the model may call: a JSON list in the OpenAI function format. Calls are printed as JSON lines (with --json: tool_calls).")] = None,
    tool_choice: Annotated[Optional[str], typer.Option("--tool-choice", metavar="CHOICE", help="auto | none | required | a tool name. Default: auto.")] = None,
    image: Annotated[Optional[list[str]], typer.Option("--image", metavar="PATH", help="An image for a vision model (PNG, JPEG or BMP); repeat for several; '-' reads one from stdin.")] = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    device_id: DeviceIdOpt = None,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = False,
    no_service: NoServiceOpt = False,
    yes: YesOpt = False,
    agent: AgentOpt = None,
    privacy: PrivacyOpt = None,
    local_only: LocalOnlyOpt = False,
    complexity: ComplexityOpt = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the route (rule, provider, model, reason) and send nothing.")] = False,
    log_prompts: Annotated[bool, typer.Option("--log-prompts", help="Also store the prompt text in the usage log.")] = False,
) -> None:
    """Generate a streamed answer to one prompt: a local ONNX model, or the provider the router picks."""
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.router.rules import RouteFlags

    from agentic_onnx.core.generation.request import ChatRequest

    options = build_options(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            top_k=top_k, seed=seed, stop=stop)
    answer = answer_fields(schema, json_mode, tools, tool_choice)
    images = read_images(image or [], task)
    if adapter and provider not in (None, "onnx"):
        from agentic_onnx.core.errors import UsageError

        raise UsageError("--adapter needs a local model.", "Use --provider onnx or drop --adapter.")
    provider = "onnx" if adapter else provider  # a LoRA adapter is local by nature
    prompt = read_task(task)
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    request = ChatRequest.of(messages, options=options, images=images, adapter=adapter, **answer)
    route = RouteFlags(provider=provider, model=model, agent=agent, privacy=privacy,
                       local_only=local_only, complexity=complexity)
    from agentic_onnx.cli.loading_view import shown_while_loading

    with shown_while_loading():
        _generate(request, route, execution_provider=execution_provider,
                  threads=threads, device_id=device_id, verbose=verbose, assume_yes=yes,
                  config=config, dry_run=dry_run, log_prompts=log_prompts,
                  use_service=not no_service)


def read_images(paths: list[str], task: str | None) -> list[Any]:
    """`--image` files (core.generation.vision.load_image); stdin carries either one image or the task."""
    if not paths:
        return []
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.generation.vision import load_image

    if paths.count("-") > 1:
        raise UsageError("Only one --image can be read from stdin ('-').", "Pass the others as files.")
    if "-" in paths and (task is None or task == "-"):
        raise UsageError("stdin can carry the image or the task, not both.",
                         'Pass the prompt with --task "...".')
    return [load_image(path) for path in paths]


def answer_fields(schema: str | None, json_mode: bool, tools: str | None,
                  tool_choice: str | None) -> dict[str, Any]:
    """What the answer must be, as ChatRequest fields: free text (none), JSON for a schema
    (`response_format`), or text/a call to given tools (`tools`, `tool_choice`)."""
    from agentic_onnx.core.errors import UsageError

    if schema is not None and json_mode:
        raise UsageError("--schema and --json-mode exclude each other.",
                         "--json-mode is --schema '{\"type\": \"object\"}'; pass one.")
    if tools is None and tool_choice is not None:
        raise UsageError("--tool-choice needs --tools.", "Pass --tools FILE.")
    if tools is not None and (schema is not None or json_mode):
        raise UsageError("--tools cannot be combined with --schema or --json-mode.",
                         "A tool's parameters are its schema; pass one of them.")
    if schema is not None or json_mode:
        from agentic_onnx.core.answers import structured

        return {"response_format": structured.load_schema(schema) if schema
                else structured.json_mode()}
    if tools is not None:
        from agentic_onnx.core.answers.tools import load_tools, parse_tool_choice

        loaded = load_tools(tools)
        return {"tools": loaded, "tool_choice": parse_tool_choice(tool_choice, loaded)}
    return {}


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


def _generate(request, route, *, execution_provider: str, threads: int | None,  # noqa: ANN001
              device_id: int | None, verbose: bool, assume_yes: bool, config: str | None,
              dry_run: bool, log_prompts: bool, use_service: bool = True) -> None:
    """Route the request, stream the answer into the right view, report. The router checks
    the finished answer (schema, tools): an invalid one ends the stream as an error that
    carries the answer's fields (with --json they go into the error object)."""
    from agentic_onnx.cli import output
    from agentic_onnx.cli.store_commands import resolve_for_run
    from agentic_onnx.core.answers.structured import StructuredOutputError
    from agentic_onnx.router.execute import route_and_stream

    out = output.current()
    routed = route_and_stream(
        request, route, config_path=config, execution_provider=execution_provider,
        threads=threads, device_id=device_id, dry_run=dry_run, log_prompts=log_prompts,
        on_notice=out.warning, use_service=use_service,
        resolve_local=lambda spec: resolve_for_run(spec, assume_yes))  # ids, aliases, paths; offers a download
    if routed.response is None:  # --dry-run
        from agentic_onnx.cli.router import show_decision

        show_decision(routed.decision.to_json(), str(routed.config_path or "") or None)
        return
    response = routed.response
    failure = None
    try:
        # JSON answers are printed only once checked, never streamed: no broken JSON on stdout.
        interrupted = _render_stream(response, out.json or request.response_format is not None)
    except StructuredOutputError as error:
        interrupted, failure = False, error
    if not interrupted and failure is None:
        _deliver(routed, request)
    if verbose:
        usage = response.usage
        if routed.service:
            out.note(f"Answered by the resident service at {routed.service}.")
        out.verbose_stats(usage.prompt_tokens if usage else 0,
                          usage.completion_tokens if usage else 0, response.timings)
    if interrupted:
        out.note("Interrupted.")
        raise typer.Exit(130)
    if failure is not None:
        raise failure


def _deliver(routed, request) -> None:  # noqa: ANN001
    """Print what is not streamed: the `--json` object, a checked JSON answer, tool calls."""
    from agentic_onnx.cli import output

    output.current().result(routed.to_json,
                            lambda out, _: _show_unstreamed(out, request, routed.response))


def _show_unstreamed(out, request, response) -> None:  # noqa: ANN001
    """A checked JSON answer (as the plain view writes it), or the tool calls as JSON lines."""
    from agentic_onnx.core.generation.response import tool_call_json

    if request.response_format is not None:
        out.answer(response.text)
    else:
        for call in response.tool_calls:
            out.json_line(tool_call_json(call))


def _render_stream(response, quiet: bool) -> bool:  # noqa: ANN001
    """Consume the response into the output's stream view (none when `quiet`: the answer is
    shown whole once checked, or as JSON); True when Ctrl-C stopped it."""
    from agentic_onnx.cli import output
    from agentic_onnx.core.generation.events import TextDelta

    view = None if quiet else output.current().stream()
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
