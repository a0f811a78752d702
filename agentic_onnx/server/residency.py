"""Which models stay loaded in the service: keep-alive and a memory budget (no I/O here).

Keep-alive follows Ollama's `keep_alive`: a duration (`"5m"`, `"30s"`, `"1h"`, `"300"` seconds)
after a model's last request, `0` unloads it as soon as its requests are done, a negative value
keeps it until the service stops; a model just loaded waits at least LOAD_GRACE_S for the
request it was loaded for (`/api/load` comes before the request itself). Before a model is loaded, the least recently used idle models
are unloaded until the new one fits in the memory budget (a model costs its weights on disk,
which genai maps as it reads them, plus the KV caches its slots hold); a model with requests
running or waiting is never unloaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agentic_onnx.core.errors import UsageError

FOREVER = None  # a keep-alive of None: until the service stops
LOAD_GRACE_S = 30.0  # a model loaded for a request waits this long for it, whatever keep_alive
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_keep_alive(value: object) -> float | None:
    """Seconds to keep a model after its last request; None: forever. A number is seconds."""
    if isinstance(value, bool):
        raise UsageError(f"keep_alive: expected a duration such as 5m, 30s or -1, not {value}.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip().lower())
        if match is None:
            raise UsageError(f"keep_alive: expected a duration such as 5m, 30s or -1, "
                             f"not {str(value)[:40]!r}.")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds):
        raise UsageError(f"keep_alive: expected a finite duration, not {str(value)[:40]!r}.")
    return FOREVER if seconds < 0 else seconds


@dataclass
class Resident:
    """One loaded model, as the budget sees it."""

    model_id: str
    size_bytes: int
    last_used: float  # time.monotonic() of its last request's end (or its load)
    keep_alive_s: float | None  # None: forever
    busy: bool = False  # requests running or waiting
    served: bool = True  # it answered a request since it was loaded

    def expires_at(self) -> float | None:
        if self.keep_alive_s is None:
            return None
        keep = self.keep_alive_s if self.served else max(self.keep_alive_s, LOAD_GRACE_S)
        return self.last_used + keep


def expired(residents: Sequence[Resident], now: float) -> list[str]:
    """The idle models whose keep-alive has run out."""
    return [r.model_id for r in residents
            if not r.busy and r.expires_at() is not None and now >= r.expires_at()]  # type: ignore[operator]


def to_unload(residents: Sequence[Resident], needed_bytes: int,
              budget_bytes: int | None) -> list[str]:
    """The least recently used idle models to unload so that `needed_bytes` more fit in the
    budget (none needed: []); raises UsageError when even unloading every idle model is not
    enough."""
    if budget_bytes is None:
        return []
    used = sum(r.size_bytes for r in residents)
    if used + needed_bytes <= budget_bytes:
        return []
    chosen: list[str] = []
    for resident in sorted((r for r in residents if not r.busy), key=lambda r: r.last_used):
        chosen.append(resident.model_id)
        used -= resident.size_bytes
        if used + needed_bytes <= budget_bytes:
            return chosen
    raise UsageError(f"The model needs {needed_bytes / 2**30:.1f} GiB and the service's memory "
                     f"budget ({budget_bytes / 2**30:.1f} GiB) is taken by models in use.",
                     "Wait for their requests to end, `agentic-onnx stop MODEL`, or raise "
                     "--max-memory-gb.")
