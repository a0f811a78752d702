"""`${VAR}` and `${VAR:-default}` in the config's string values (keys are left alone).

An unset variable without a default becomes "" and is reported with its JSON path, so the
loader can say which variable to set (and allow it for API keys, whose absence only matters
when that provider is used). Every value taken from a variable is reported with its path too,
so the loader can register the ones that land in secret-bearing places for redaction. The
variables come from `environ` (default: the process environment); a project file is read with
an empty one, so it cannot copy the user's secrets into a URL or a header of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class _Substitution:
    environ: Mapping[str, str]
    unset: list[tuple[str, str]] = field(default_factory=list)  # (json path, variable)
    taken: list[tuple[str, str]] = field(default_factory=list)  # (json path, value used)

    def value(self, data: Any, path: str) -> Any:
        if isinstance(data, dict):
            return {key: self.value(item, join_path(path, key)) for key, item in data.items()}
        if isinstance(data, list):
            return [self.value(item, f"{path}[{index}]") for index, item in enumerate(data)]
        if isinstance(data, str):
            return REFERENCE.sub(lambda match: self._lookup(match, path), data)
        return data

    def _lookup(self, match: re.Match[str], path: str) -> str:
        name, default = match.group(1), match.group(2)
        value = self.environ.get(name)
        if value:
            self.taken.append((path, value))
            return value
        if default is not None:
            return default
        self.unset.append((path, name))
        return ""


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class Substituted:
    data: Any
    unset: list[tuple[str, str]]  # (json path, variable) of references without a value
    taken: list[tuple[str, str]]  # (json path, value) of every value read from a variable


def substitute(data: Any, environ: Mapping[str, str] | None = None) -> Substituted:
    """`${VAR}` and `${VAR:-default}` in every string value, from `environ` (default: the
    process environment)."""
    substitution = _Substitution(os.environ if environ is None else environ)
    return Substituted(substitution.value(data, ""), substitution.unset, substitution.taken)
