"""Options shared by several commands, declared once (the `hf` CLI's habit)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


class CliState:
    """Process-wide flags set while parsing (read by `main` when it reports an error)."""

    debug: bool = False


def _set_debug(value: bool) -> bool:
    if value:
        CliState.debug = True
    return value


DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks for errors.", callback=_set_debug, is_eager=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", metavar="MODEL", help="Model: a catalog id (see `onnx models`), a family alias, a name added with `onnx add`, or a path to an onnxruntime-genai model folder. Default: the recommended model for this machine."),
]
ExecutionProviderOpt = Annotated[
    str,
    typer.Option(
        "--execution-provider", "-e", metavar="EP",
        help="auto | cpu | cuda | dml | webgpu. auto picks CUDA > DirectML > WebGPU > CPU "
        "among those available and matching the model variant.",
    ),
]
def _check_threads(value: Optional[int]) -> Optional[int]:
    from agentic_onnx.core.errors import UsageError

    if value is not None and not 1 <= value <= 1024:
        raise UsageError(f"Invalid value for --threads: {value} is not between 1 and 1024.")
    return value


ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", metavar="N", callback=_check_threads, help="CPU threads for the model. Default: physical cores."),
]

# Generation options: `run`, the root form and `chat` declare them through these aliases.
SystemOpt = Annotated[Optional[str], typer.Option("--system", "-s", metavar="TEXT", help="System message.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", metavar="N", help="Most new tokens. Default: 512.")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", metavar="T", help="Sampling temperature; 0 is greedy. Default: 0.")]
TopPOpt = Annotated[Optional[float], typer.Option("--top-p", metavar="P", help="Nucleus sampling mass. Default: 1.0.")]
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", metavar="K", help="Sample among the k most likely tokens. Default: 50.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Random seed for sampling.")]
StopOpt = Annotated[Optional[list[str]], typer.Option("--stop", metavar="TEXT", help="Stop when this string appears (repeatable).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Download a missing catalog model without asking.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Print load and eval statistics to stderr.")]
