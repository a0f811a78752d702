"""Test-only: slows or holds each decode step, so a test can press Ctrl-C mid-generation or
queue requests behind a running one.

Loaded through PYTHONPATH by the tests (tests/server_support.py); the product never sees it.
`AGENTIC_TEST_DECODE_DELAY_S`: seconds added to each step; `AGENTIC_TEST_DECODE_GATE`: a file
path: every step waits while that file exists (at most a minute), so a test opens the gate by
deleting it.
"""

import os
import time

_DELAY = float(os.environ.get("AGENTIC_TEST_DECODE_DELAY_S", "0"))
_GATE = os.environ.get("AGENTIC_TEST_DECODE_GATE", "")

if _DELAY or _GATE:
    import onnxruntime_genai as _og

    class _SlowGenerator(_og.Generator):
        def generate_next_token(self):  # noqa: D401 - same contract, slower
            deadline = time.monotonic() + 60
            while _GATE and os.path.exists(_GATE) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(_DELAY)
            super().generate_next_token()

    _og.Generator = _SlowGenerator
