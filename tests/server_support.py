"""A real `agentic-onnx serve` on a free loopback port, for the server tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SLOW_DECODE = Path(__file__).parent / "slow_decode"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    """One plain HTTP exchange (stdlib only): status, headers, parsed JSON (or text)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, dict(error.headers), error.read()
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode("utf-8", "replace")


class Server:
    """`python -m agentic_onnx serve ...` in a subprocess; `stop()` ends it with Ctrl-C."""

    def __init__(self, *args: str, slow_decode_s: float = 0.0,
                 decode_gate: Path | None = None) -> None:
        """`slow_decode_s`: seconds added to each decode step; `decode_gate`: a file whose
        existence holds every decode step (tests/slow_decode)."""
        self.args = args
        self.api_key = args[args.index("--api-key") + 1] if "--api-key" in args else None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if slow_decode_s or decode_gate is not None:
            self.env.update(PYTHONPATH=str(SLOW_DECODE), AGENTIC_TEST_DECODE_DELAY_S=str(slow_decode_s),
                            AGENTIC_TEST_DECODE_GATE=str(decode_gate or ""))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai_client(self, api_key: str = "unused", timeout: float = 60):  # noqa: ANN201
        """The real OpenAI SDK pointed at this server (no retries: tests see every answer)."""
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0,
                             timeout=timeout)

    def anthropic_client(self, api_key: str = "unused", timeout: float = 60):  # noqa: ANN201
        """The real Anthropic SDK pointed at this server (no retries)."""
        import anthropic

        return anthropic.Anthropic(base_url=self.url, api_key=api_key, max_retries=0,
                                   timeout=timeout)

    def start(self, attempts: int = 3) -> Server:
        for _ in range(attempts):  # another process may take the free port first
            self.port = free_port()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agentic_onnx", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), *self.args],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                env=self.env)
            if self.wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"the server did not start: {self.output}")

    def wait_ready(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                status, _, _ = http("GET", f"{self.url}/health", timeout=2)
                # Ready to serve and done saying so: the "Ready:" line is printed after /health
                # turns 200, and tests that read the log must not see it arrive later.
                if status == 200 and "Ready:" in self.output:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def health(self) -> dict[str, Any]:
        """/health as a client holding the key sees it (with the models and their queues)."""
        key = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return http("GET", f"{self.url}/health", headers=key)[2]

    def wait_for(self, predicate, timeout: float = 60) -> dict[str, Any]:  # noqa: ANN001
        """Poll /health until `predicate(model_status)` holds for the first model (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.health()["models"][0]
            if predicate(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"/health never matched: {self.health()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")
