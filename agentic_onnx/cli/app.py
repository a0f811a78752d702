"""The root app: global options, the seed's root form and the command groups (`main.py` runs it)."""

from __future__ import annotations

import copy
import inspect
import sys
from typing import Annotated, get_type_hints

import typer

from agentic_onnx import __version__
from agentic_onnx.cli import output
from agentic_onnx.cli.chat import chat_command
from agentic_onnx.cli.config import config_app
from agentic_onnx.cli.embed import embed_command
from agentic_onnx.cli.onnx import onnx_app
from agentic_onnx.cli.options import DebugOpt
from agentic_onnx.cli.router import router_app
from agentic_onnx.cli.run import run_command
from agentic_onnx.cli.serve import serve_command
from agentic_onnx.cli.service import ps_command, service_app, stop_model_command
from agentic_onnx.cli.usage import usage_command

app = typer.Typer(
    name="agentic-onnx",
    help="Private, cost-free, fast local LLM inference with ONNX Runtime GenAI.",
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # locals can hold API keys
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(onnx_app, name="onnx")
app.add_typer(router_app, name="router")
app.add_typer(config_app, name="config")
app.add_typer(service_app, name="service")
app.command("run")(run_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)
app.command("embed")(embed_command)
app.command("usage")(usage_command)
app.command("ps")(ps_command)
app.command("stop")(stop_model_command)


def _show_version(value: bool) -> None:
    if value:
        output.current().line(f"agentic-onnx {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.",
                                          callback=_show_version, is_eager=True)] = False,
    debug: DebugOpt = False,  # main() takes it from anywhere; declared here for the help
    **run_options: object,
) -> None:
    """Run a prompt with `--model M --task "..."` (as `run` does), or use a command below."""
    if ctx.invoked_subcommand is not None:
        return
    if run_options.get("task") is None and sys.stdin.isatty():
        output.current().line(ctx.get_help())
        raise typer.Exit()
    run_command(**run_options)  # type: ignore[arg-type]


# The root form's options that `agentic-onnx --help` shows; the others work the same but are
# listed once, under `agentic-onnx run --help`, so the root help stays readable.
ROOT_HELP_OPTIONS = {"task", "model", "provider", "privacy", "local_only", "json_output"}


def _with_run_options(callback):  # noqa: ANN001, ANN202
    """Give the root callback `run`'s options, declared once in `run_command`."""
    hints = {**get_type_hints(run_command, include_extras=True),
             **get_type_hints(callback, include_extras=True)}
    own = [p for p in inspect.signature(callback).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    run_params = [p.replace(annotation=_hidden_unless(p.name, hints[p.name]))
                  for p in inspect.signature(run_command).parameters.values()
                  if p.name not in {q.name for q in own}]
    params = [p.replace(annotation=hints[p.name]) for p in own] + run_params
    callback.__signature__ = inspect.Signature(params)
    callback.__annotations__ = {p.name: p.annotation for p in params}
    return callback


def _hidden_unless(name: str, annotation: object) -> object:
    """`annotation` with its typer.Option hidden from the root help (a copy: `run` keeps it)."""
    if name in ROOT_HELP_OPTIONS:
        return annotation
    info = copy.copy(annotation.__metadata__[0])  # type: ignore[attr-defined]
    info.hidden = True
    return Annotated[annotation.__origin__, info]  # type: ignore[attr-defined]


app.callback(invoke_without_command=True, epilog="All of `run`'s options work here too: "
             "see `agentic-onnx run --help`.")(_with_run_options(root))
