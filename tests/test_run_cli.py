"""The test helper `run_cli` (tests/conftest.py): the CLI run in this process must answer as the
installed console script does, and leave this process as it found it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import warnings

import pytest

from agentic_onnx.cli import main as cli_main
from agentic_onnx.router import secrets

from .conftest import MODELS, run_cli, run_cli_process


@pytest.mark.parametrize("args", [
    ["run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "hi", "--threads", "zero"],  # Typer's error
    ["run", "-m", "./no/such/model", "-t", "hi", "--json"],  # a routed failure, one JSON object
    ["onnx", "list"],
], ids=["usage-error", "json-error", "list"])
def test_in_process_answers_as_the_console_script_does(args):
    in_process, process = run_cli(*args), run_cli_process(*args)
    assert (in_process.returncode, in_process.stderr) == (process.returncode, process.stderr)
    if "--json" in args:  # the attempt's duration is the one value that may differ
        same = [json.loads(result.stdout) for result in (in_process, process)]
        for data in same:
            for attempt in data["attempts"]:
                attempt.pop("seconds")
        assert same[0] == same[1]
    else:
        assert in_process.stdout == process.stdout


def test_stdin_is_a_pipe_and_env_applies_to_the_call_only(monkeypatch):
    monkeypatch.delenv("AGENTIC_ONNX_MAX_IMAGE_PIXELS", raising=False)
    before = dict(os.environ)
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "--max-tokens", "2",
                     stdin="Hello!", env={"AGENTIC_ONNX_MAX_IMAGE_PIXELS": "lots"})
    assert result.returncode == 2 and "AGENTIC_ONNX_MAX_IMAGE_PIXELS='lots'" in result.stderr
    assert dict(os.environ) == before
    assert run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "--max-tokens", "2",
                   stdin="Hello!").returncode == 0  # the piped prompt, without the bad setting


def test_a_call_neither_sees_nor_leaves_process_state(monkeypatch):
    monkeypatch.setattr(secrets, "_SECRETS", set())
    monkeypatch.setattr(secrets, "_WINDOWS", set())
    secrets.register_secret("the-tests-own-secret")
    streams, hooks = (sys.stdin, sys.stdout, sys.stderr), (sys.excepthook, threading.excepthook)
    handler = signal.getsignal(signal.SIGINT)
    seen = {}

    def command(args: list[str]) -> int:
        seen["redacted"] = secrets.redact("the-tests-own-secret")  # a new process knows none
        seen["terminal"] = sys.stdin.isatty() or sys.stdout.isatty() or sys.stderr.isatty()
        secrets.register_secret("a-secret-of-the-call")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("out")
        print("err", file=sys.stderr)
        return 7

    monkeypatch.setattr(cli_main, "main", command)
    result = run_cli("anything")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert seen == {"redacted": "the-tests-own-secret", "terminal": False}
    assert secrets.redact("the-tests-own-secret a-secret-of-the-call") == "*** a-secret-of-the-call"
    assert (sys.stdin, sys.stdout, sys.stderr) == streams
    assert (sys.excepthook, threading.excepthook) == hooks
    assert signal.getsignal(signal.SIGINT) is handler


def test_warnings_and_thread_errors_reach_stderr_as_in_a_process(monkeypatch):
    def command(args: list[str]) -> int:
        warnings.warn("shown like a process shows it", UserWarning, stacklevel=1)
        warnings.warn("hidden like a process hides it", DeprecationWarning, stacklevel=1)
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
        return 0

    monkeypatch.setattr(cli_main, "main", command)
    stderr = run_cli("anything").stderr
    assert "UserWarning: shown like a process shows it" in stderr
    assert "hidden" not in stderr
    assert "ZeroDivisionError" in stderr and "Traceback" in stderr


def test_a_call_that_runs_past_its_timeout_raises_as_subprocess_run_does(monkeypatch):
    stop = threading.Event()

    def command(args: list[str]) -> int:
        print("started")
        stop.wait(30)  # never set: only the timeout ends the wait
        return 0

    monkeypatch.setattr(cli_main, "main", command)
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        run_cli("anything", timeout=0.2)
    assert raised.value.output == "started\n"
