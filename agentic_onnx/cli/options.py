"""Options shared by several commands, declared once (the `hf` CLI's habit)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


class CliState:
    """Process-wide flags of this invocation (read by `main` when it reports an error)."""

    debug: bool = False  # `--debug` anywhere on the command line (main takes it out of argv)
    json: bool = False  # `--json` was given: a failure also prints a JSON error object

    @classmethod
    def reset(cls, json: bool = False, debug: bool = False) -> None:
        cls.debug = debug
        cls.json = json


def _set_debug(value: bool) -> bool:
    if value:
        CliState.debug = True
    return value


# Declared by the root only: cli/main.py takes `--debug` out of the command line wherever it
# stands, so no command declares it (the root keeps it for its help and for in-process callers).
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks for errors (anywhere on the command line).",
                 callback=_set_debug, is_eager=True),
]


def _set_json_mode(value: bool) -> bool:
    """`--json` sets the output object's mode while parsing, so a command never reads it."""
    from agentic_onnx.cli import output

    output.current().json = value
    return value


# Each command that takes --json declares it (its help lists it) and never reads the value:
# the callback has set the mode of cli/output.py's object before the command runs.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.",
                                       callback=_set_json_mode)]
def complete_model(incomplete: str) -> list[str]:
    """Tab completion for --model: the names that start with what was typed (a path completes
    as a path in the shell when nothing matches)."""
    try:
        from agentic_onnx.core.models.resolve import model_names

        return [name for name in model_names() if name.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - a broken store must not break the shell
        return []


AdapterOpt = Annotated[
    Optional[str],
    typer.Option("--adapter", metavar="NAME|PATH",
                 help="A LoRA adapter of the local model (a name from `onnx list`, or an "
                      ".onnx_adapter file). The model must be LoRA-ready (docs/import.md)."),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", metavar="MODEL", autocompletion=complete_model, help="Model: a catalog id (see `onnx models`), a family alias, a name added with `onnx add`, or a path to an onnxruntime-genai model folder. Default: the recommended model for this machine."),
]
def _check_execution_provider(value: str) -> str:
    """An unknown EP name is a usage error (exit 2) before anything loads."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.machine.execution_provider import EP_CHOICES

    if value.lower() not in EP_CHOICES:
        raise UsageError(f"Invalid value for --execution-provider: {value!r} is not one of "
                         f"{', '.join(EP_CHOICES)}.")
    return value.lower()


ExecutionProviderOpt = Annotated[
    str,
    typer.Option(
        "--execution-provider", "-e", metavar="EP", callback=_check_execution_provider,
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

def _check_device_id(value: Optional[int]) -> Optional[int]:
    from agentic_onnx.core.errors import UsageError

    if value is not None and value < 0:
        raise UsageError(f"Invalid value for --device-id: {value} is negative.",
                         "GPUs are numbered from 0 (`agentic-onnx onnx info` lists them).")
    return value


DeviceIdOpt = Annotated[
    Optional[int],
    typer.Option("--device-id", metavar="N", callback=_check_device_id, help="The GPU to load the model on with -e cuda or dml (0: the first). Default: the EP's own choice, GPU 0."),
]

# `serve` and `service start`: one worker per GPU (checked by cli/serve.py's parse_device_ids).
DeviceIdsOpt = Annotated[
    Optional[list[str]],
    typer.Option("--device-id", metavar="N|all", help="The GPU to load the models on with -e cuda or dml. Repeat it (or N,M) to load each model once per GPU, a worker each, with requests going to the one with the fewest in flight (CUDA only); `all`: every NVIDIA GPU. Default: the EP's own choice, GPU 0."),
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
NoServiceOpt = Annotated[bool, typer.Option("--no-service", help="Load the model in this process even when the resident service runs (`agentic-onnx service start`); AGENTIC_ONNX_NO_SERVICE=1 does the same.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Print load and eval statistics to stderr.")]
