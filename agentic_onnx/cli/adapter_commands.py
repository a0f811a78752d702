"""`onnx import --adapter PEFT_FOLDER --base NAME` (routed here by cli/import_commands.py): a PEFT
LoRA adapter converted for a LoRA-ready base (core.models.adapters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def import_adapter(adapter: Path, base: str, name: Optional[str]) -> dict[str, Any]:
    """Convert a PEFT LoRA adapter into an .onnx_adapter kept beside its base model; what
    `--json` prints about it."""
    from agentic_onnx.core.models.adapters import import_adapter as convert

    path = convert(adapter, base, name)
    return {"base": base, "adapter": path.name.removesuffix(".onnx_adapter"), "path": str(path),
            "size_bytes": path.stat().st_size}


def adapter_line(imported: dict[str, Any]) -> str:
    """The line a person reads about an imported adapter."""
    return f"Adapter {imported['adapter']} imported for {imported['base']}: {imported['path']}"
