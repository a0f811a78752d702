"""Where agentic-onnx keeps its files, resolved at call time so one variable moves them all."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV_VAR = "AGENTIC_FLOW_HOME"


def home_dir() -> Path:
    """The agentic-flow home: `$AGENTIC_FLOW_HOME`, else `~/.agentic-flow`."""
    override = os.environ.get(HOME_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".agentic-flow"


def store_dir() -> Path:
    """The model store: one folder per installed model."""
    return home_dir() / "onnx-models"
