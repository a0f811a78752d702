"""Which project config files the user has trusted, as direnv and git's safe.directory do.

A cloned repository may ship `./agentic-flow.json`; it is read only after
`agentic-onnx config trust`, which records the file's resolved path and the SHA-256 of its
bytes in `$AGENTIC_FLOW_HOME/trusted-configs.json` (written atomically). A file whose bytes
changed since is untrusted again, until trusted again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.paths import home_dir
from agentic_onnx.router.errors import ConfigError

TRUST_FILE_NAME = "trusted-configs.json"
TrustStatus = Literal["trusted", "untrusted", "changed"]


@dataclass(frozen=True)
class TrustEntry:
    path: str
    sha256: str
    trusted_at: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "trusted_at": self.trusted_at}


def trust_file_path() -> Path:
    return home_dir() / TRUST_FILE_NAME


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def resolved(path: Path) -> str:
    """The key a file is trusted under: its absolute path with symlinks resolved."""
    return str(path.expanduser().resolve())


def trust_status(path: Path, content: bytes) -> TrustStatus:
    """Whether `content` (the bytes just read from `path`) is what the user trusted."""
    entry = _entries().get(resolved(path))
    if entry is None:
        return "untrusted"
    return "trusted" if entry.sha256 == digest(content) else "changed"


def trust(path: Path, content: bytes) -> TrustEntry:
    """Record `content` of `path` as trusted (replacing an earlier record of the same path)."""
    entries = _entries()
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    entry = TrustEntry(resolved(path), digest(content), stamp)
    entries[entry.path] = entry
    _write(entries)
    return entry


def revoke(path: Path) -> bool:
    """Forget `path`; False when it was not trusted."""
    entries = _entries()
    if entries.pop(resolved(path), None) is None:
        return False
    _write(entries)
    return True


def trusted_entries() -> list[TrustEntry]:
    return sorted(_entries().values(), key=lambda entry: entry.path)


def _entries() -> dict[str, TrustEntry]:
    """The records; a missing file means none. A damaged one is an error rather than a silent
    reset, so the user sees it (and `config trust` names the file to remove)."""
    path = trust_file_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["trusted"]
        return {record["path"]: TrustEntry(str(record["path"]), str(record["sha256"]),
                                           str(record.get("trusted_at", "")))
                for record in records}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"Cannot read the list of trusted config files {str(path)!r}.",
                          "Remove that file and trust your project configs again.") from None


def _write(entries: dict[str, TrustEntry]) -> None:
    """Temp file in the same folder, then an atomic rename: never a half-written list."""
    with local_files("record the trusted config files"):
        _write_atomically(trust_file_path(), entries)


def _write_atomically(path: Path, entries: dict[str, TrustEntry]) -> None:
    from agentic_onnx.core.models.store import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": 1, "trusted": [
        entry.to_json() for entry in sorted(entries.values(), key=lambda entry: entry.path)]})


# ---------------------------------------------------------------------------------------------
# What `config trust` does


def trust_project_file(path: Path) -> dict[str, str]:
    """Trust `path` as it is now. It must be a readable JSON object: a broken file is not
    worth trusting (its problem is shown now, with the file's name)."""
    from agentic_onnx.router.config_file import read_config_file

    if not path.is_file():
        raise ConfigError(f"No config file at {str(path)!r} to trust.",
                          "Give the path of a project's agentic-flow.json or "
                          "router.config.json.")
    file = read_config_file(path)
    if not isinstance(file.data, dict):
        raise ConfigError(f"Invalid config {path}: expected a JSON object at the top level.",
                          "See docs/router.md for the schema.")
    return trust(path, file.content).to_json()


def revoke_trust(path: Path) -> dict[str, object]:
    return {"path": resolved(path), "revoked": revoke(path)}


def list_trust() -> list[dict[str, str]]:
    """Every trusted file with its status now: trusted, changed or missing."""
    result = []
    for entry in trusted_entries():
        path = Path(entry.path)
        try:
            status = "trusted" if digest(path.read_bytes()) == entry.sha256 else "changed"
        except OSError:
            status = "missing"
        result.append({**entry.to_json(), "status": status})
    return result
