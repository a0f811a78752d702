"""`config init`: a starter config in `$AGENTIC_FLOW_HOME/config.json`.

Two starters, both data files (agentic_onnx/data): local only (every request answered here, no
cloud fallback), or `--hybrid`: simple and private work local, harder work to Claude, with
OpenRouter and then the local model as the fallback chain. Keys are never written: the hybrid
file says `${ANTHROPIC_API_KEY}` / `${OPENROUTER_API_KEY}`, read when a request needs them.

An existing file is never overwritten unless asked (`--force`), and then it is kept first as
`config.json.bak` (or `.bak.1`, `.bak.2`, ...). Files are written 0600, through a temporary
file and a rename, so a config is never half-written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.paths import home_dir
from agentic_onnx.router.errors import ConfigError

STARTERS = {False: "starter-config.json", True: "starter-config-hybrid.json"}
FILE_MODE = 0o600


@dataclass(frozen=True)
class InitResult:
    path: Path
    backup: Path | None
    hybrid: bool
    shadowed: list[str]  # why the new file may not be the one that is read

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "written": True, "hybrid": self.hybrid,
                "backup": str(self.backup) if self.backup else None}


def starter_text(hybrid: bool = False) -> str:
    return resources.files("agentic_onnx.data").joinpath(STARTERS[hybrid]).read_text("utf-8")


def init_config(hybrid: bool = False, force: bool = False) -> InitResult:
    """Write the starter config; refuse to replace a file unless `force` (then back it up)."""
    path = home_dir() / "config.json"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; it was not changed.",
                          "Edit it, or run `agentic-onnx config init --force` to replace it "
                          "(the old file is kept beside it as config.json.bak).")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a file; nothing was written.",
                          "Move it aside, then run `agentic-onnx config init` again.")
    with local_files("write the starter config"):
        path.parent.mkdir(parents=True, exist_ok=True)
        backup = _back_up(path) if path.exists() else None
        _write_private(path, starter_text(hybrid))
    return InitResult(path, backup, hybrid, _shadowed(path))


def _back_up(path: Path) -> Path:
    backup = path.with_name(path.name + ".bak")
    number = 0
    while backup.exists():
        number += 1
        backup = path.with_name(f"{path.name}.bak.{number}")
    shutil.copyfile(path, backup)
    os.chmod(backup, FILE_MODE)  # the old file may hold a literal key
    return backup


def _write_private(path: Path, text: str) -> None:
    from agentic_onnx.core.models.store import write_text_atomic

    write_text_atomic(path, text, FILE_MODE)  # 0600 before a byte is written


def _shadowed(path: Path) -> list[str]:
    """What the new file changes about the lookup: a variable that names another file wins
    over it; agentic-flow's router.config.json beside it is no longer read."""
    from agentic_onnx.router.config_lookup import CONFIG_ENV_VAR, ROUTER_CONFIG_NAME

    notes = []
    value = os.environ.get(CONFIG_ENV_VAR)
    if value and Path(value).expanduser() != path:
        notes.append(f"${CONFIG_ENV_VAR} names {value}, which is read instead of {path}; "
                     "unset it to use the new file.")
    router_file = path.with_name(ROUTER_CONFIG_NAME)
    if router_file.is_file():
        notes.append(f"{router_file} (agentic-flow's) is no longer read: {path.name} comes "
                     "first. Copy what you need from it into the new file.")
    return notes
