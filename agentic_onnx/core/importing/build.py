"""Run onnxruntime-genai's model builder in a child process: its output goes to a log file in the
partial folder, its stage is read from that output as it goes, its peak memory is measured, and
Ctrl-C (or any failure here) stops it before the caller cleans up.

The builder is a separate process because it imports torch and transformers (never loaded into
ours), holds several copies of the weights at its peak (docs/import.md), and can be killed
without leaving our process in an unknown state.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentic_onnx.core.errors import ConversionError

BUILDER_MODULE = "onnxruntime_genai.models.builder"
LOG_FILE = "builder.log"
POLL_S = 0.1
STOP_GRACE_S = 5.0
# What the builder prints -> the stage we show. Checked in order; the first match wins.
_STAGES = (
    (re.compile(r"^Loading weights"), "loading weights"),
    (re.compile(r"^Reading layer (\d+)"), "reading layer {0}"),
    (re.compile(r"^Reading (embedding layer|final norm|LM head)"), "reading {0}"),
    (re.compile(r"start to quantize"), "quantizing"),
    (re.compile(r"^Saving ONNX model"), "saving the ONNX model"),
    (re.compile(r"^Saving GenAI config"), "writing genai_config.json"),
    (re.compile(r"^Saving processing files"), "copying the tokenizer"),
)


class BuildListener:
    """What a build reports; the CLI renders it. Every method is optional."""

    def stage(self, stage: str, elapsed_s: float) -> None: ...
    def tick(self, elapsed_s: float) -> None: ...  # about every POLL_S while the builder runs


@dataclass
class BuildRequest:
    input_path: Path  # `-i`: a Hugging Face folder or a .gguf file
    config_dir: Path | None  # `-m`: the folder with config.json and tokenizer (GGUF only)
    output_dir: Path
    cache_dir: Path
    log_path: Path
    precision: str
    execution_provider: str
    extra_options: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        command = [sys.executable, "-m", BUILDER_MODULE, "-i", str(self.input_path),
                   "-o", str(self.output_dir), "-p", self.precision, "-e", self.execution_provider,
                   "-c", str(self.cache_dir)]
        if self.config_dir is not None:
            command[3:3] = ["-m", str(self.config_dir)]
        if self.extra_options:
            command += ["--extra_options", *(f"{k}={v}" for k, v in self.extra_options.items())]
        return command


@dataclass
class BuildResult:
    seconds: float
    peak_rss_bytes: int | None


def run_builder(request: BuildRequest, listener: BuildListener | None = None) -> BuildResult:
    """Run the builder to completion; a non-zero exit is a ConversionError pointing at the log.
    KeyboardInterrupt (or anything else raised while waiting) stops the child first."""
    listener = listener or BuildListener()
    request.output_dir.mkdir(parents=True, exist_ok=True)
    request.cache_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    started = time.monotonic()
    with request.log_path.open("ab") as log:
        log.write(("$ " + " ".join(request.command()) + "\n").encode())
        log.flush()
        child = subprocess.Popen(request.command(), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    watcher = _Watcher(child.pid, request.log_path, listener, started)
    try:
        while child.poll() is None:
            watcher.poll()
            time.sleep(POLL_S)
    except BaseException:
        stop_child(child)
        raise
    finally:
        watcher.poll()
    seconds = time.monotonic() - started
    if child.returncode != 0:
        raise ConversionError(
            f"The model builder failed (exit {child.returncode}) after {seconds:.0f} s: "
            f"{last_error_line(request.log_path)}",
            f"Its log is {request.log_path}.")
    return BuildResult(seconds, watcher.peak_rss)


def stop_child(child: subprocess.Popen) -> None:
    """SIGTERM the builder's process group (it may have started workers), then SIGKILL."""
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (kill, STOP_GRACE_S)):
        if child.poll() is not None:
            return
        try:
            if hasattr(os, "killpg"):
                os.killpg(child.pid, sig)  # the child leads its own session (start_new_session)
            else:  # Windows: no process groups or SIGKILL; terminate() is TerminateProcess
                child.terminate()
        except (ProcessLookupError, PermissionError):
            child.terminate()
        try:
            child.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def last_error_line(log_path: Path) -> str:
    """The builder's own last words: the last line of its traceback, or the last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return "(no log)"
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Killed)\b", ln)]
    line = (errors or lines or ["(empty log)"])[-1]
    return line[:300]


class _Watcher:
    """Reads the log's new lines for the stage and samples the builder's memory (its whole tree)."""

    def __init__(self, pid: int, log_path: Path, listener: BuildListener, started: float) -> None:
        self.pid, self.log_path, self.listener, self.started = pid, log_path, listener, started
        self.offset = 0
        self.peak_rss: int | None = None
        self.stage = ""

    def poll(self) -> None:
        elapsed = time.monotonic() - self.started
        self._sample_memory()
        for line in self._new_lines():
            for pattern, label in _STAGES:
                match = pattern.search(line)
                if match:
                    stage = label.format(*match.groups())
                    if stage != self.stage:
                        self.stage = stage
                        self.listener.stage(stage, elapsed)
                    break
        self.listener.tick(elapsed)

    def _new_lines(self) -> list[str]:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:
            return []
        self.offset += end + 1
        return re.split(r"[\r\n]+", data[:end].decode("utf-8", errors="replace"))

    def _sample_memory(self) -> None:
        import psutil

        try:
            process = psutil.Process(self.pid)
            rss = process.memory_info().rss
            rss += sum(child.memory_info().rss for child in process.children(recursive=True))
        except psutil.Error:
            return
        self.peak_rss = max(self.peak_rss or 0, rss)
