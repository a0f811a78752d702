"""The loading indicator's elapsed-time ticker: a child process that redraws while the model
loads (genai holds the GIL, so no thread of ours could) and wipes its line when told to stop."""

from __future__ import annotations

import re
import time

from agentic_onnx.cli.loading_view import TICKER_MIN_BYTES, loading_indicator, shown_while_loading
from agentic_onnx.core.generation.engine import LOAD_OBSERVER, LoadStart

FRAME = re.compile(r"\r[|/\\-] Loading big-model \(\d[^)]*, CPU\) \d+\.\d s\x1b\[K")


def test_the_ticker_draws_elapsed_time_until_the_load_ends(capfd):
    seen = ""
    with loading_indicator(LoadStart("big-model", TICKER_MIN_BYTES, "cpu")):
        deadline = time.monotonic() + 60  # a bound on waiting for the event, not a timing check
        while not FRAME.search(seen) and time.monotonic() < deadline:
            seen += capfd.readouterr().err
    assert FRAME.search(seen), seen
    rest = capfd.readouterr().err
    assert rest.endswith("\r\x1b[K")  # the line is wiped at the end


def test_a_small_model_gets_the_static_line_and_no_ticker(capfd):
    with loading_indicator(LoadStart("small", 1024, "cpu")):
        pass
    err = capfd.readouterr().err
    assert err.startswith("\r\x1b[KLoading small (") and err.endswith("\r\x1b[K")
    assert not FRAME.search(err)


def test_no_indicator_unless_stderr_is_a_terminal():
    with shown_while_loading():  # pytest's stderr is not a terminal
        assert LOAD_OBSERVER.get() is None
