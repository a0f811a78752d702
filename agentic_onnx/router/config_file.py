"""Reading a config file that may be hostile: too big, not UTF-8, not JSON, nested too deeply.

Every failure is a `ConfigError` (exit 2, one line), never a traceback: `json.loads` raises
`RecursionError` on deep nesting and `ValueError` on integers of more than 4,300 digits, and
`NaN`/`Infinity` are not JSON at all. The bytes are returned with the data, so the trust check
hashes exactly what was parsed (no window between checking a file and reading it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_onnx.router.errors import ConfigError

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # the schema needs 6; the rest is headroom for cudaOptions and the like
_SCHEMA_HINT = "See docs/router.md for the schema."


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    content: bytes
    data: Any


def read_config_file(path: Path) -> ConfigFile:
    """Read and parse `path`; a ConfigError that names the file for anything but a JSON value."""
    content = _read_bytes(path)
    return ConfigFile(path, content, parse_json(content, path))


def parse_json(content: bytes, path: Path) -> Any:
    where = f"Invalid config {path}"
    try:
        text = content.decode("utf-8-sig")  # a BOM, as some editors write, is fine
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{content[error.start]:02x} at offset "
                          f"{error.start}).", "Save the file as UTF-8 JSON.") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{where}: not valid JSON at line {error.lineno} column {error.colno} ({error.msg}).",
            "Fix the JSON syntax (a trailing comma or a missing quote?).") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config.", _SCHEMA_HINT) from None
    except _ConstantError as error:
        raise ConfigError(f"{where}: {error} (NaN and Infinity are not JSON).",
                          _SCHEMA_HINT) from None
    except ValueError:  # an integer beyond Python's 4,300-digit conversion limit
        raise ConfigError(f"{where}: holds a number with too many digits to be a config value.",
                          _SCHEMA_HINT) from None
    if nesting_depth(data) > MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep.", _SCHEMA_HINT)
    return data


def nesting_depth(data: Any) -> int:
    """How deeply lists and objects nest in `data` (iterative: no recursion limit to hit)."""
    deepest, pending = 0, [(data, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"Cannot read config {str(path)!r}: {error.strerror or error}.",
                          "Check the path and the file's permissions.") from None
    if len(content) > MAX_CONFIG_BYTES:
        raise ConfigError(f"Invalid config {path}: larger than {MAX_CONFIG_BYTES // 1024 // 1024} "
                          "MiB, far more than any config needs.", _SCHEMA_HINT)
    return content


class _ConstantError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not a number")
