"""Test-only: slows each decode step so a test can press Ctrl-C mid-generation.

Loaded through PYTHONPATH by tests/test_cli_interrupt.py; the product never sees it.
"""

import os
import time

_DELAY = float(os.environ.get("AGENTIC_TEST_DECODE_DELAY_S", "0"))

if _DELAY:
    import onnxruntime_genai as _og

    class _SlowGenerator(_og.Generator):
        def generate_next_token(self):  # noqa: D401 - same contract, slower
            time.sleep(_DELAY)
            super().generate_next_token()

    _og.Generator = _SlowGenerator
