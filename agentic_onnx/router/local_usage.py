"""Local requests answered outside the router (`chat` turns, `serve` requests) in the usage
log, like `run`'s: one row per finished request, its front end in the command column (`chat`,
`serve:openai`, `serve:anthropic`), read from the request's core `Response` as `run`'s row is.

Times run from the moment the request was queued (what its client waited; a chat turn is not
queued): `ttft_ms` to the first visible text or tool call, `latency_ms` to the end. A local
model costs $0. Writing the row never fails the request: `on_failure` hears the one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agentic_onnx.core.generation.response import Response

OUTCOMES = ("ok", "invalid", "error", "interrupted")  # invalid: an answer that failed its check


def log_local(command: str, response: Response, outcome: str, error: str | None = None,
              queued_at: float | None = None,
              on_failure: Callable[[str], None] | None = None) -> None:
    from agentic_onnx.core.errors import AgenticError
    from agentic_onnx.router.secrets import redact
    from agentic_onnx.router.usage import UsageRecord, log_request

    started = response.started_at
    queued = queued_at if queued_at is not None else started
    waited_ms = (started - queued) * 1000 if started is not None and queued is not None else 0.0
    timings, usage = response.timings, response.usage
    if started is not None:
        latency_ms = waited_ms + timings.total_s * 1000
    else:  # failed before its stream started
        latency_ms = (time.perf_counter() - queued) * 1000 if queued is not None else None
    try:
        log_request(UsageRecord(
            command=command, provider=response.provider, model=response.model, rule=None,
            private=False, local=True, prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost_usd=0.0 if outcome in ("ok", "invalid") else None, latency_ms=latency_ms,
            ttft_ms=None if timings.ttft_ms is None else waited_ms + timings.ttft_ms,
            outcome=outcome, error=redact(error) if error else None))
    except Exception as failure:  # noqa: BLE001 - the log must never fail a request
        if on_failure is not None:
            on_failure(failure.one_line() if isinstance(failure, AgenticError)
                       else f"Could not write the usage log ({failure}).")
