"""`agentic-onnx onnx import`: bring your own model (core/importing/importer.py; docs/import.md).

`onnx import SOURCE --name NAME` converts a Hugging Face folder, a hub repo or an fp32/fp16 GGUF
into the store. `onnx import --adapter PEFT_FOLDER --base NAME` converts a LoRA adapter for a
LoRA-ready base instead (cli/adapter_commands.py). Thin: parse, call the core, render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt


def import_command(
    source: Annotated[Optional[str], typer.Argument(metavar="SOURCE", help="A Hugging Face model folder, a hub repo id (org/name) or an fp32/fp16 .gguf file.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="The store name to use with --model.")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", "-p", metavar="int4|int8|fp16|fp32", help="Weights precision. Default: the catalog's for the EP (int4).")] = None,
    execution_provider: Annotated[Optional[str], typer.Option("--execution-provider", "-e", metavar="cpu|cuda|dml|webgpu", help="The EP to build for. Default: what `auto` picks here.")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Hub sources: branch, tag or commit. Default: main.")] = None,
    config_dir: Annotated[Optional[Path], typer.Option("--config", metavar="DIR", help="GGUF sources: the folder with config.json and the tokenizer. Default: the .gguf file's folder.")] = None,
    block_size: Annotated[Optional[int], typer.Option("--block-size", metavar="N", help="int4/int8: quantization block size (16-256). Default: 32.")] = None,
    accuracy_level: Annotated[Optional[int], typer.Option("--accuracy-level", metavar="N", help="int4/int8: MatMul accuracy level 1-4 (4: int8 activations). Default: 4 on the CPU.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an installed model of that name.")] = False,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", metavar="PEFT_FOLDER", help="Import a PEFT LoRA adapter for --base instead of a model.")] = None,
    base: Annotated[Optional[str], typer.Option("--base", metavar="NAME", help="With --adapter: the LoRA-ready model it is for.")] = None,
    lora: Annotated[Optional[Path], typer.Option("--lora", metavar="PEFT_FOLDER", help="Build the model LoRA-ready, for adapters that target the same modules as this PEFT adapter (fp32/fp16), and import that adapter beside it.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Convert a Hugging Face checkpoint or GGUF into the store (or, with --adapter, a LoRA adapter)."""
    from agentic_onnx.cli.adapter_commands import adapter_line, import_adapter
    from agentic_onnx.core.errors import UsageError

    out = output.current()
    if adapter is not None:
        if base is None or source is not None:
            raise UsageError("--adapter takes --base NAME and no SOURCE.",
                             "Run `agentic-onnx onnx import --adapter PEFT_FOLDER --base NAME`.")
        imported = import_adapter(adapter, base, name)
        out.result(imported, adapter_line(imported))
        return
    if source is None or name is None:
        raise UsageError("onnx import needs a SOURCE and --name NAME.",
                         "Run `agentic-onnx onnx import ./my-hf-model --name my-model`.")
    request = _request(source, name, precision, execution_provider, revision, config_dir,
                       block_size, accuracy_level, force, lora)
    data = _import_base(out, request)
    if lora is None:
        out.result(data, data["path"])
        return
    imported = import_adapter(lora, name, None)  # with --json: inside the one object
    out.result({**data, "adapter": imported},
               lambda out, _: (out.line(data["path"]), out.line(adapter_line(imported))))


def _request(source: str, name: str, precision: str | None, execution_provider: str | None,
             revision: str | None, config_dir: Path | None, block_size: int | None,
             accuracy_level: int | None, force: bool, lora: Path | None):  # noqa: ANN202
    """The core's ImportRequest; `--lora` builds the graph with LoRA inputs (core/models/adapters.py):
    the builder exports that adapter's MatMuls, which then become inputs with zero defaults."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.core.importing.importer import ImportRequest

    lora_options: dict[str, str] = {}
    if lora is not None:
        if precision in ("int4", "int8"):
            raise UsageError(f"--lora needs an fp32 or fp16 model (an {precision} export "
                             "quantizes the LoRA MatMuls too).", "Pass --precision fp32 or fp16.")
        from agentic_onnx.core.models.adapters import lora_ready_extra_options

        precision = precision or "fp32"
        lora_options = lora_ready_extra_options(lora)
    return ImportRequest(source=source, name=name, precision=precision,
                         execution_provider=execution_provider, revision=revision,
                         config_dir=config_dir, block_size=block_size,
                         accuracy_level=accuracy_level, force=force,
                         extra_builder_options=lora_options,
                         post_build=_make_lora_ready if lora is not None else None)


def _make_lora_ready(folder: Path) -> object:
    from agentic_onnx.core.models.adapters import make_lora_ready

    return make_lora_ready(folder)


def _import_base(out: output.Output, request) -> dict:  # noqa: ANN001 - core.importing.importer.ImportRequest
    """Build and install the model; its result (the `--json` object) for the caller to show."""
    from agentic_onnx.cli.import_view import ImportProgressView
    from agentic_onnx.core.errors import ExitCode
    from agentic_onnx.core.importing.importer import import_model
    from agentic_onnx.core.models.store import format_bytes, partial_dir

    name = request.name
    try:
        with ImportProgressView(out, name) as view:
            result = import_model(request, listener=view)
    except KeyboardInterrupt:
        out.note(f"Interrupted: the conversion was stopped and nothing was installed "
                 f"(its log: {partial_dir(name) / 'builder.log'}).")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    manifest, record = result.manifest, result.manifest.imported
    assert record is not None
    peak = f", peak memory {format_bytes(record.peak_rss_bytes)}" if record.peak_rss_bytes else ""
    out.note(f"Installed {name} ({format_bytes(manifest.size_bytes)}, {record.precision} for "
             f"{record.execution_provider}) in {record.build_seconds:.0f} s{peak}. "
             f"Run it with `agentic-onnx run --model {name} --task ...`.")
    return {"id": manifest.id, "path": str(result.path),
                "size_bytes": manifest.size_bytes, "precision": record.precision,
                "execution_provider": record.execution_provider,
                "source": record.model_dump(mode="json", exclude={"files"}),
                "source_files": len(record.files), "build_seconds": record.build_seconds,
                "peak_rss_bytes": record.peak_rss_bytes,
                "estimated_peak_bytes": result.budget.peak_memory_bytes}
