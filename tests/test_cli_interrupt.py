"""Ctrl-C during generation: stop cleanly, keep what was printed, exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import MODELS

SLOW = Path(__file__).parent / "slow_decode"


def test_sigint_mid_generation_keeps_the_text_and_exits_130():
    env = {**os.environ, "PYTHONPATH": str(SLOW), "AGENTIC_TEST_DECODE_DELAY_S": "0.05",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_onnx", "run", "-m", str(MODELS / "tiny-phi3-fp32"),
         "-t", "Hello! How are you today?", "--max-tokens", "400"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = process.stdout.read(1)  # generation has started and reached the user
    assert first
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    printed = (first + out).decode()
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert len(printed.strip()) > 1  # what was printed is kept
    assert err.decode().strip().splitlines()[-1] == "Interrupted."
    # The kept text is a prefix of the uninterrupted answer.
    full = subprocess.run(
        [sys.executable, "-m", "agentic_onnx", "run", "-m", str(MODELS / "tiny-phi3-fp32"),
         "-t", "Hello! How are you today?", "--max-tokens", "400"],
        capture_output=True, text=True, timeout=60)
    assert full.stdout.startswith(printed.rstrip("\n"))
