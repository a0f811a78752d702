"""`agentic-onnx onnx ...`: the local ONNX models and this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt

onnx_app = typer.Typer(help="Local ONNX models and this machine's hardware.", no_args_is_help=True)


@onnx_app.command("info")
def info_command(
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure the memory read bandwidth again (it is cached in AGENTIC_FLOW_HOME/hardware.json).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Show CPU, memory bandwidth, GPUs, execution providers, packages and the recommended model."""
    from agentic_onnx.cli.info_view import render_info
    from agentic_onnx.core.machine.system_report import system_report

    output.current().result(system_report(refresh=refresh), render_info)



def _register_commands() -> None:
    """The `onnx` group's map: which function answers which command, in help order."""
    from agentic_onnx.cli import bench_commands, import_commands, store_commands

    for name, command in (
        ("models", store_commands.models_command),
        ("download", store_commands.download_command),
        ("list", store_commands.list_command),
        ("remove", store_commands.remove_command),
        ("verify", store_commands.verify_command),
        ("add", store_commands.add_command),
        ("import", import_commands.import_command),
        ("test", bench_commands.test_command),
        ("benchmark", bench_commands.benchmark_command),
    ):
        onnx_app.command(name)(command)


_register_commands()
