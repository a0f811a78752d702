"""Ctrl-C during generation: stop cleanly, keep what was printed, exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import MODELS, run_cli

SLOW = Path(__file__).parent / "slow_decode"


def test_sigint_mid_generation_keeps_the_text_and_exits_130():
    env = {**os.environ, "PYTHONPATH": str(SLOW), "AGENTIC_TEST_DECODE_DELAY_S": "0.05",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_onnx", "run", "-m", str(MODELS / "tiny-phi3-fp32"),
         "-t", "Hello! How are you today?", "--max-tokens", "400"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = b""  # wait until the answer has reached the user (two visible characters)
    while len(first.decode(errors="ignore").strip()) < 2:
        chunk = os.read(process.stdout.fileno(), 64)
        assert chunk, "the answer ended before Ctrl-C"
        first += chunk
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    printed = (first + out).decode()
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert len(printed.strip()) > 1  # what was printed is kept
    assert err.decode().strip().splitlines()[-1] == "Interrupted."
    # The kept text is a prefix of the uninterrupted answer.
    full = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "Hello! How are you today?",
                   "--max-tokens", "400")
    assert full.returncode == 0, full.stderr
    assert full.stdout.startswith(printed.rstrip("\n"))
