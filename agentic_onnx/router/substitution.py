"""`${VAR}` and `${VAR:-default}` in the config's string values (keys are left alone).

An unset variable without a default becomes "" and is reported with its JSON path, so the
loader can say which variable to set (and allow it for API keys, whose absence only matters
when that provider is used).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class _Substitution:
    unset: list[tuple[str, str]] = field(default_factory=list)  # (json path, variable)

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
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        self.unset.append((path, name))
        return ""


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def substitute(data: Any) -> tuple[Any, list[tuple[str, str]]]:
    """`${VAR}` and `${VAR:-default}` in every string value; returns the unset references."""
    substitution = _Substitution()
    return substitution.value(data, ""), substitution.unset
