"""`agentic-onnx chat` as a user runs it: piped scripts and a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.generation.events import TextDelta
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import build_options

from .conftest import MODELS, run_cli

PHI3 = str(MODELS / "tiny-phi3-fp32")
SLOW = Path(__file__).parent / "slow_decode"
OPTIONS = build_options(max_tokens=24)


def fresh_text(messages: list[dict]) -> str:
    model = load_model(open_model_folder(MODELS / "tiny-phi3-fp32"), "cpu", threads=1)
    return "".join(e.text for e in model.stream(messages, OPTIONS) if isinstance(e, TextDelta))


def test_a_piped_session_answers_each_turn_over_the_whole_history(tmp_path):
    transcript = tmp_path / "chat.json"
    script = "\n".join(["Hello!", "And one plus one?", "/stats", f"/save {transcript}",
                        "/clear", "Name three colors of the rainbow.", ""])
    result = run_cli("chat", "-m", PHI3, "--system", "Be brief.", "--max-tokens", "24",
                     "--threads", "1", stdin=script)
    assert result.returncode == 0, result.stderr
    system = {"role": "system", "content": "Be brief."}
    first = fresh_text([system, {"role": "user", "content": "Hello!"}])
    history = [system, {"role": "user", "content": "Hello!"},
               {"role": "assistant", "content": first},
               {"role": "user", "content": "And one plus one?"}]
    second = fresh_text(history)
    after_clear = fresh_text([system, {"role": "user", "content": "Name three colors of the rainbow."}])
    lines = result.stdout.splitlines()
    assert lines[0] == first and lines[1] == second
    assert lines[-1] == after_clear  # /clear started over, keeping the system prompt
    stats = "\n".join(lines[2:-1])
    assert "reused from the KV cache" in stats and "completion tokens" in stats
    saved = json.loads(transcript.read_text(encoding="utf-8"))
    assert saved["messages"] == history + [{"role": "assistant", "content": second}]
    assert saved["turns"][1]["reused_tokens"] > 0
    assert "Cleared" in result.stderr and "Saved" in result.stderr


def test_unknown_commands_and_help_go_to_stderr_and_eof_exits_zero():
    result = run_cli("chat", "-m", PHI3, "--threads", "1", stdin="/help\n/nope\n/system\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "/clear" in result.stderr and "Unknown command /nope" in result.stderr
    assert "System prompt: (none)" in result.stderr


def test_the_context_filling_up_is_announced(tmp_path):
    long_turn = "Please summarise this: " + "colors of the rainbow and numbers " * 12
    script = "".join(f"{i}. {long_turn}\n" for i in range(6))
    result = run_cli("chat", "-m", PHI3, "--max-tokens", "24", "--threads", "1", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "The context is full: dropped the" in result.stderr


def test_bad_options_are_usage_errors():
    result = run_cli("chat", "-m", PHI3, "--temperature", "-1")
    assert result.returncode == 2
    assert "--temperature" in result.stderr


def read_until(fd: int, marker: bytes, seen: bytearray, start: int = 0,
               timeout: float = 60) -> bool:
    """Read the terminal into `seen` until `marker` shows up after `start` (bounded)."""
    deadline = time.monotonic() + timeout
    while seen.find(marker, start) < 0 and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:  # EIO: the child closed the terminal
                break
    return seen.find(marker, start) >= 0


def test_on_a_terminal_ctrl_c_stops_the_answer_and_the_session_goes_on():
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(SLOW),
           "AGENTIC_TEST_DECODE_DELAY_S": "0.05", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_onnx", "chat", "-m", PHI3, "--max-tokens", "400",
         "--threads", "1"], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    seen = bytearray()
    try:
        assert read_until(leader, b">>> ", seen), seen.decode(errors="replace")
        os.write(leader, b"Hello! How are you today?\r")
        assert read_until(leader, b"tokens/s", seen), seen.decode(errors="replace")  # answering
        process.send_signal(signal.SIGINT)
        assert read_until(leader, b"Stopped.", seen), seen.decode(errors="replace")
        assert read_until(leader, b">>> ", seen, start=seen.index(b"Stopped."))  # still here
        os.write(leader, b"/stats\r")
        assert read_until(leader, b"completion tokens", seen), seen.decode(errors="replace")
        os.write(leader, b"/exit\r")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(leader)
    assert process.returncode == 0
    assert b"Traceback" not in seen
