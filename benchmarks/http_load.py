"""Streamed chat requests from concurrent clients, for the benchmarks that drive `serve`
(gateway_bench.py, batch_bench.py): `serve` processes and the client side of a load."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TASK = "Write a short story about a robot who learns to paint."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Serve:
    """One `agentic-onnx serve` process, ready when /health answers 200."""

    def __init__(self, home: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "AGENTIC_FLOW_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.log = open(home / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentic_onnx", "serve", "--host", "127.0.0.1", "--port",
             str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 300) -> None:
        import httpx2

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: see {self.log.name}")
            try:
                if httpx2.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve did not get ready: see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@dataclass
class Answer:
    client: int
    first_s: float | None  # to the first text
    tokens: int
    text: str
    deployment: str  # x-agentic-deployment (a gateway's), else "direct"


def ask(url: str, model: str, max_tokens: int, client: int = 0) -> Answer:
    """One streamed greedy request of client number `client`: each client its own prompt, and
    each request a tenant of its own (`user`), so none reuses a kept KV cache: what is measured
    is decoding, not the prefix cache."""
    import uuid

    import httpx2

    body = {"model": model, "messages": [{"role": "user", "content": f"{TASK} ({client})"}],
            "user": f"bench-{uuid.uuid4().hex}",
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, tokens, text = time.perf_counter(), None, 0, []
    with httpx2.Client(timeout=600) as http:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
            reply.raise_for_status()
            deployment = reply.headers.get("x-agentic-deployment", "direct")
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        first = first or time.perf_counter() - started
                        text.append(piece)
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return Answer(client, first, tokens, "".join(text), deployment)


def load(url: str, model: str, clients: int, max_tokens: int, requests: int = 1) -> dict:
    """`clients` clients at once (started together), each sending `requests` requests in turn:
    aggregate tokens/s, p50/p95 time to first text, and every Answer."""
    answers: list[Answer] = []
    lock, start = threading.Lock(), threading.Barrier(clients + 1)

    def client(number: int) -> None:
        start.wait()
        for _ in range(requests):
            answer = ask(url, model, max_tokens, number)
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    firsts = sorted(a.first_s for a in answers if a.first_s is not None)
    return {"wall_s": wall, "tokens_per_s": sum(a.tokens for a in answers) / wall,
            "ttft_p50_s": statistics.median(firsts) if firsts else None,
            "ttft_p95_s": firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))]
            if firsts else None, "answers": answers}
