"""One function turns `--model X` into a checked model folder.

Today X is a path to a genai model folder. The registry (catalog ids, family aliases, custom
names) plugs in here, so every command resolves models the same way.
"""

from __future__ import annotations

from pathlib import Path

from agentic_onnx.core.errors import ModelNotFoundError, UsageError
from agentic_onnx.core.model_folder import ModelFolder, open_model_folder


def resolve_model(spec: str | None) -> ModelFolder:
    if spec is None or not spec.strip():
        raise UsageError(
            "No model given.", "Pass --model with the path to an onnxruntime-genai model folder."
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"Model {spec!r} not found: no such folder.",
            "Pass --model with the path to a folder that holds genai_config.json.",
        )
    return open_model_folder(path)
