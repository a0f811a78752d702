"""`run` on a terminal: live Markdown on a pseudo-terminal, clean exit."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from .conftest import MODELS, expected_cases
from .test_markdown_blocks import final_screen

EXPECTED_TEXT = next(c["text"] for m, c in expected_cases()
                     if m == "tiny-phi3-fp32" and c["name"] == "hello")


def test_run_on_a_pseudo_terminal_renders_and_exits_zero():
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_onnx", "run", "-m", str(MODELS / "tiny-phi3-fp32"),
         "-t", "Hello! How are you today?", "--max-tokens", "24"],
        stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO once the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == 0, screen
    assert "Traceback" not in screen
    assert "\x1b[" in screen  # it is rendered for a terminal, not plain text
    shown = final_screen(screen, columns=100)
    assert "tokens/s" not in shown  # the live status line is gone at the end
    assert "Loading tiny-phi3-fp32 (" in screen and "CPU)" in screen  # the loading indicator...
    assert "Loading" not in shown  # ...wiped once the model is loaded
    expected_alnum = "".join(c for c in EXPECTED_TEXT if c.isalnum())
    assert expected_alnum in "".join(c for c in shown if c.isalnum())  # the answer, once
