"""The speed of the last download, remembered so that the next download offer can say how long
it will take (`~4 min at your last download's speed`). Kept in `$AGENTIC_FLOW_HOME/cache/`; a
missing or unreadable record only means no estimate."""

from __future__ import annotations

import json
import time

from agentic_onnx.core.paths import home_dir

# Below this, a transfer is mostly request latency: it says little about the link's speed.
MIN_MEASURED_BYTES = 128 * 1024
_FILE = "download-rate.json"


def record(nbytes: int, seconds: float) -> None:
    """Remember a finished transfer's rate (best effort: never fails a download)."""
    if nbytes < MIN_MEASURED_BYTES or seconds <= 0:
        return
    from agentic_onnx.core.models.store import write_json_atomic

    path = home_dir() / "cache" / _FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"bytes_per_s": nbytes / seconds, "bytes": nbytes,
                                 "measured_at": time.time()})
    except OSError:
        pass


def last_rate() -> float | None:
    """Bytes per second of the last measured download, or None."""
    try:
        value = json.loads((home_dir() / "cache" / _FILE).read_text(encoding="utf-8"))
        rate = float(value["bytes_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rate if rate > 0 else None


def eta_text(nbytes: int, rate: float | None) -> str | None:
    """`~4 min at your last download's speed (11.2 MB/s)`, or None without a rate."""
    if rate is None:
        return None
    from agentic_onnx.core.models.store import format_bytes

    seconds = nbytes / rate
    when = f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min" \
        if seconds < 90 * 60 else f"~{seconds / 3600:.1f} h"
    return f"{when} at your last download's speed ({format_bytes(int(rate))}/s)"
