"""The loading indicator: while a model loads, a line on a terminal's stderr with the model's
name, size, execution provider and the seconds elapsed.

onnxruntime-genai holds Python's GIL while it builds a session, so no Python thread of ours can
redraw during a load. The elapsed time is therefore drawn by a small child process (started
only for models large enough to take a while), which stops and wipes its line when the load
ends. Smaller models get the static line, wiped the same way.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Below this, loading takes well under a second here: a static line is enough.
TICKER_MIN_BYTES = 200 * 2**20
_TICKER = r"""
import sys, threading, time
label, started = sys.argv[1], time.monotonic()
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
frames, index = "|/-\\", 0
while not done.wait(0.1):
    sys.stderr.write(f"\r{frames[index % 4]} {label} {time.monotonic() - started:.1f} s\x1b[K")
    sys.stderr.flush()
    index += 1
sys.stderr.write("\r\x1b[K")
sys.stderr.flush()
"""


@contextmanager
def loading_indicator(start: Any) -> Iterator[None]:
    """Show `start` (core.generation.engine.LoadStart) while the block runs."""
    from agentic_onnx.cli import output
    from agentic_onnx.core.machine.execution_provider import EP_LABELS
    from agentic_onnx.core.models.store import format_bytes

    out = output.current()
    label = (f"Loading {start.name} ({format_bytes(start.size_bytes)}, "
             f"{EP_LABELS.get(start.execution_provider, start.execution_provider)})")
    out.transient(f"{label}...")
    ticker = _start_ticker(label) if start.size_bytes >= TICKER_MIN_BYTES else None
    try:
        yield
    finally:
        _stop(ticker)
        out.clear_transient()


@contextmanager
def shown_while_loading() -> Iterator[None]:
    """Within the block, model loads show the indicator (on a terminal's stderr only)."""
    if not sys.stderr.isatty():
        yield
        return
    from agentic_onnx.core.generation.engine import LOAD_OBSERVER

    token = LOAD_OBSERVER.set(loading_indicator)
    try:
        yield
    finally:
        LOAD_OBSERVER.reset(token)


def _start_ticker(label: str) -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen([sys.executable, "-c", _TICKER, label], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
    except OSError:
        return None  # the static line stays


def _stop(ticker: subprocess.Popen[bytes] | None) -> None:
    if ticker is None:
        return
    try:
        ticker.stdin.close()  # type: ignore[union-attr]
        ticker.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        ticker.kill()
