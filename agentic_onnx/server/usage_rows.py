"""`serve` requests in the usage log, like `run`'s: one row per finished request, its front end
(`serve:openai`, `serve:anthropic`) in the command column, so `agentic-onnx usage` counts them.

Times run from the moment the request was queued (what its client waited): `ttft_ms` to the
first visible text or tool call, `latency_ms` to the end. A local model costs $0. Writing the
row never fails the request: a log that cannot be written is one line in the server's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("uvicorn.error")


@dataclass
class Served:
    """What one request did, gathered by its worker."""

    front_end: str
    model: str
    queued_at: float
    first_text_at: float | None = None
    ended_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcome: str = "ok"  # ok | error | interrupted
    error: str | None = None


def write(served: Served) -> None:
    from agentic_onnx.router.secrets import redact
    from agentic_onnx.router.usage import UsageRecord, log_request

    ended = served.ended_at if served.ended_at is not None else served.queued_at
    ttft = None if served.first_text_at is None else (served.first_text_at - served.queued_at) * 1000
    try:
        log_request(UsageRecord(
            command=served.front_end, provider="onnx", model=served.model, rule=None,
            private=False, local=True, prompt_tokens=served.prompt_tokens,
            completion_tokens=served.completion_tokens,
            cost_usd=0.0 if served.outcome == "ok" else None,
            latency_ms=(ended - served.queued_at) * 1000, ttft_ms=ttft, outcome=served.outcome,
            error=redact(served.error) if served.error else None))
    except Exception as error:  # noqa: BLE001 - the log must never fail a request
        log.warning("Could not write the usage log: %s", error)
