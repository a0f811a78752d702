"""What a killed `onnx remove` or download leaves in the store, swept at the start of
`onnx download`, `onnx remove` and `onnx list` (docs/store.md, "Leftovers").

`delete_in_store` renames a folder to `.partial/.trash-<hex>-<id>` before deleting it, and
`write_json_atomic` writes a temp file before renaming it over `manifest.json` or
`download.json`; a `kill -9` in between leaves a whole model, or a temp file, behind. Both are
written under their model's lock, so the sweep deletes one only while it holds that lock itself:
what a live process is using is never touched.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from agentic_onnx.core.models.names import is_model_name
from agentic_onnx.core.paths import store_dir
from agentic_onnx.core.models.store import PARTIAL_DIR, TRASH_PREFIX, model_lock_if_free, trash_owner

# write_json_atomic's temp files for the store's own JSON files
_TEMP_FILE = re.compile(r"\.(manifest|download)\.json\.[A-Za-z0-9_]+\.tmp")


def sweep_leftovers() -> list[Path]:
    """Delete what a killed `remove` or download left behind: `.partial/.trash-*` folders (a
    whole model, half deleted) and the store's JSON temp files. Something is deleted only while
    this process holds its model's lock, so nothing a live process is using is touched (older
    `.trash-<hex>` folders name no model: nothing but a delete ever touches a trash folder, so
    they go too). Best effort: never raises; returns what it deleted."""
    root = store_dir()
    if not root.is_dir():
        return []
    swept: list[Path] = []
    for entry in _children(root / PARTIAL_DIR):
        if entry.name.startswith(TRASH_PREFIX) and entry.is_dir() and not entry.is_symlink():
            owner = trash_owner(entry.name)
            swept += _sweep(owner, [entry]) if owner else _delete_all([entry])
    for entry in _children(root) + _children(root / PARTIAL_DIR):
        if is_model_name(entry.name) and entry.is_dir() and not entry.is_symlink():
            temps = [f for folder in (entry, entry / "model") for f in _children(folder)
                     if _TEMP_FILE.fullmatch(f.name) and f.is_file()]
            swept += _sweep(entry.name, temps) if temps else []
    return swept


def _sweep(owner: str, paths: list[Path]) -> list[Path]:
    with model_lock_if_free(owner) as free:
        return _delete_all(paths) if free else []


def _delete_all(paths: list[Path]) -> list[Path]:
    deleted = []
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            deleted.append(path)
        except OSError:
            pass  # a read-only store, or gone already: the next sweep tries again
    return deleted


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []

