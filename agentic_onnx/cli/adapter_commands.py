"""`onnx import --adapter PEFT_FOLDER --base NAME` (routed here by cli/import_commands.py): a PEFT
LoRA adapter converted for a LoRA-ready base (core.models.adapters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt


def import_adapter_command(
    adapter: Annotated[Path, typer.Option("--adapter", metavar="PEFT_FOLDER", help="A PEFT LoRA folder (adapter_config.json, adapter_model.safetensors).")],
    base: Annotated[str, typer.Option("--base", metavar="NAME", help="The LoRA-ready model the adapter is for (a name, id or folder).")],
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="The adapter's name (default: the PEFT folder's name); requests use BASE:NAME.")] = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert a PEFT LoRA adapter into an .onnx_adapter kept beside its base model."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.models.adapters import import_adapter

    path = import_adapter(adapter, base, name)
    adapter_name = path.name.removesuffix(".onnx_adapter")
    if json_output:
        render.print_json({"base": base, "adapter": adapter_name, "path": str(path),
                           "size_bytes": path.stat().st_size})
    else:
        print(f"Adapter {adapter_name} imported for {base}: {path}")
