"""The model store: `<home>/onnx-models/<id>/`, one complete model per folder.

A folder counts as installed only when its `manifest.json` exists; the manifest is the last
thing written (inside the staging folder, which is then renamed into place in one step), so an
interrupted download can never look installed. In-progress downloads live in `.partial/<id>/`,
one writer per model holds `.locks/<id>.lock`. Nothing outside the store is ever deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from agentic_onnx.core.errors import (
    InsufficientDiskError,
    ModelNotFoundError,
    StoreError,
    VerificationError,
)
from agentic_onnx.core.importing.record import ImportRecord
from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.models.names import check_model_name, is_model_name
from agentic_onnx.core.paths import store_dir

MANIFEST = "manifest.json"
PARTIAL_DIR = ".partial"
LOCKS_DIR = ".locks"
MIN_FREE_ENV_VAR = "AGENTIC_ONNX_MIN_FREE_BYTES"
DEFAULT_MIN_FREE_BYTES = 256 * 2**20  # leave this much free after a download
HASH_CHUNK = 4 * 2**20
TRASH_PREFIX = ".trash-"  # .partial/.trash-<12 hex>-<owner id>: a folder being deleted


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the model folder, POSIX separators
    size: int
    sha256: str  # what we computed from the bytes on disk
    lfs: bool  # True: sha256 was checked against the hub's LFS oid; False: the git blob id was


class Manifest(BaseModel):
    """What was installed, from where, and when. `files` is what `onnx verify` re-checks."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    id: str
    origin: str  # catalog | custom
    repo: str
    subfolder: str
    revision: str  # what was asked for (a branch, tag or commit)
    commit: str  # what it resolved to
    execution_provider: str | None = None
    precision: str | None = None
    files: list[ManifestFile]
    size_bytes: int
    downloaded_at: str
    last_used_at: str | None = None
    kind: str = "chat"  # chat | embedding (an encoder: `agentic-onnx embed`)
    imported: ImportRecord | None = None  # `onnx import`: the source, builder and options


# -- paths ---------------------------------------------------------------------------------------


def model_dir(model_id: str) -> Path:
    """Ids become folder names: core/models/names.py refuses anything that could leave the store."""
    return store_dir() / check_model_name(model_id)


def partial_dir(model_id: str) -> Path:
    return store_dir() / PARTIAL_DIR / check_model_name(model_id)


def lock_path(model_id: str) -> Path:
    return store_dir() / LOCKS_DIR / f"{check_model_name(model_id)}.lock"


def inside_store(path: Path) -> Path:
    """`path`, resolved, if it lies strictly inside the store; else a StoreError. Every delete
    goes through this check."""
    root = store_dir().resolve()
    resolved = path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise StoreError(f"Refusing to touch {path}: it is outside the model store {root}.")
    return resolved


def delete_in_store(path: Path) -> None:
    """Remove a file or folder that must lie inside the store (links are removed, not followed).
    Callers hold the lock of the model the path belongs to: a folder is renamed to
    `.partial/.trash-<hex>-<id>` first, and core/models/leftovers.py deletes such a folder (left by a
    killed process) only when it can take that model's lock."""
    root, parent = store_dir().resolve(), path.parent.resolve()
    if not (parent == root or parent.is_relative_to(root)):
        raise StoreError(f"Refusing to touch {path}: it is outside the model store {root}.")
    if path.is_symlink():
        path.unlink()  # the link lives in the store; what it points to does not
        return
    if not path.exists():
        return
    target = inside_store(path)
    if target.is_dir():
        # Rename first so a half-deleted folder is never mistaken for a model.
        trash = _trash_path(_owner_id(target))
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        target.unlink()


def _owner_id(target: Path) -> str | None:
    """The model a path inside the store belongs to: `<id>/...` or `.partial/<id>/...`."""
    parts = target.relative_to(store_dir().resolve()).parts
    owner = parts[1] if parts[0] == PARTIAL_DIR and len(parts) > 1 else parts[0]
    return owner if is_model_name(owner) else None


def _trash_path(owner: str | None) -> Path:
    tag = uuid.uuid4().hex[:12]
    return store_dir() / PARTIAL_DIR / (f"{TRASH_PREFIX}{tag}-{owner}" if owner
                                        else f"{TRASH_PREFIX}{tag}")


def trash_owner(name: str) -> str | None:
    """The owner id in a trash folder's name; None for the older `.trash-<hex>` form."""
    rest = name[len(TRASH_PREFIX):]
    owner = rest[13:] if len(rest) > 13 and rest[12] == "-" else ""
    return owner if is_model_name(owner) else None


def safe_join(root: Path, relative: str) -> Path:
    """`root / relative`, refusing paths that escape `root` (hub file names are untrusted)."""
    from agentic_onnx.core.models.catalog import check_hub_path

    try:
        check_hub_path(relative)
    except ValueError as error:
        raise StoreError(f"Refusing hub file {relative!r}: {error}.") from None
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise StoreError(f"Refusing hub file {relative!r}: it escapes the model folder.")
    return root / relative


# -- manifests -----------------------------------------------------------------------------------


def read_manifest(model_id: str) -> Manifest | None:
    """The manifest of an installed model, or None (not installed, or unreadable)."""
    path = model_dir(model_id) / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def is_installed(model_id: str) -> bool:
    return read_manifest(model_id) is not None


def installed_models() -> list[tuple[Manifest, Path]]:
    """Every installed model (folders with a valid manifest), by id."""
    root = store_dir()
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if not is_model_name(child.name):
            continue
        manifest = read_manifest(child.name)
        if manifest is not None:
            found.append((manifest, child))
    return found


def write_json_atomic(path: Path, data: object, mode: int | None = None) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", mode)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to a temp file in the same folder (with `mode`, when given, before it holds
    anything), fsync, then rename it over `path`: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json_atomic(folder / MANIFEST, manifest.model_dump(mode="json"))


def mark_used(model_id: str) -> None:
    """Record `last_used_at`; best effort: skipped while another process holds the model's lock
    (a download or remove), and a read-only store is fine."""
    with model_lock_if_free(model_id) as free:
        manifest = read_manifest(model_id) if free else None
        if manifest is None:
            return
        manifest.last_used_at = now_iso()
        try:
            write_manifest(model_dir(model_id), manifest)
        except OSError:
            pass


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- remove, verify, disk ------------------------------------------------------------------------


def remove_model(model_id: str) -> bool:
    """Delete an installed model and any partial download of it, under the model's lock.
    True when something was removed."""
    from filelock import FileLock

    folder, partial = model_dir(model_id), partial_dir(model_id)
    with local_files(f"remove {model_id} from the model store"):
        lock = lock_path(model_id)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock)):
            existed = folder.exists() or partial.exists()
            delete_in_store(folder)
            delete_in_store(partial)
    return existed


# -- locks -------------------------------------------------------------------------------------


@contextmanager
def model_lock_if_free(model_id: str) -> Iterator[bool]:
    """Hold `model_id`'s lock if no other process does: yields True, else (busy, or the lock
    cannot even be created on a read-only store) False. Never waits."""
    from filelock import FileLock, Timeout

    path = lock_path(model_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (how the hub names non-LFS files)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model(model_id: str, on_bytes: Callable[[int], None] | None = None) -> Manifest:
    """Re-hash every file the manifest lists; a VerificationError names what differs."""
    manifest = read_manifest(model_id)
    if manifest is None:
        raise ModelNotFoundError(f"Model {model_id!r} is not installed.",
                                 "See `agentic-onnx onnx list` for installed models.")
    folder = model_dir(model_id)
    problems = []
    for entry in manifest.files:
        path = safe_join(folder, entry.path)
        if not path.is_file():
            problems.append(f"{entry.path} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{entry.path} has {path.stat().st_size} bytes, expected {entry.size}")
        elif sha256_file(path, on_bytes) != entry.sha256:
            problems.append(f"{entry.path} has a different SHA-256")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerificationError(
            f"Model {model_id!r} failed verification: {problems[0]}{more}.",
            f"Re-download it: `agentic-onnx onnx download {model_id} --force`.",
        )
    return manifest


def min_free_bytes() -> int:
    """Bytes to keep free after a download: `$AGENTIC_ONNX_MIN_FREE_BYTES`, default 256 MiB."""
    raw = os.environ.get(MIN_FREE_ENV_VAR)
    if raw is None or not raw.strip():
        return DEFAULT_MIN_FREE_BYTES
    try:
        return max(0, int(raw))
    except ValueError:
        raise StoreError(f"{MIN_FREE_ENV_VAR} must be a whole number of bytes, not {raw!r}.") from None


def check_free_space(needed_bytes: int, where: Path) -> None:
    """Refuse to start a download that would leave less than `min_free_bytes()` free."""
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    reserve = min_free_bytes()
    if free - needed_bytes < reserve:
        raise InsufficientDiskError(
            f"Not enough disk space in {where}: the download needs {format_bytes(needed_bytes)} "
            f"and {format_bytes(reserve)} must stay free, but only {format_bytes(free)} is free.",
            f"Free some space, or remove models with `agentic-onnx onnx remove ID` "
            f"({MIN_FREE_ENV_VAR} sets the reserve).",
        )


def format_bytes(count: int) -> str:
    """Decimal units, as the hub shows sizes (2.7 GB)."""
    if count < 1000:
        return f"{count} B"
    value, unit = count / 1000, "KB"
    for next_unit in ("MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, next_unit
    return f"{value:.1f} {unit}"
