"""`agentic-onnx onnx ...`: the local ONNX models and this machine."""

from __future__ import annotations

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt

onnx_app = typer.Typer(help="Local ONNX models and this machine's hardware.", no_args_is_help=True)


@onnx_app.command("info")
def info_command(json_output: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Show CPU, memory, GPUs, execution providers and installed packages."""
    from agentic_onnx.cli import render
    from agentic_onnx.cli.info_view import render_info
    from agentic_onnx.core.system_report import system_report

    report = system_report()
    if json_output:
        render.print_json(report)
    else:
        render_info(report)


from agentic_onnx.cli import store_commands  # noqa: E402, F401 - registers models/download/list/remove/verify/add


from agentic_onnx.cli import bench_commands  # noqa: E402,F401  (registers `onnx test` and `onnx benchmark`)
