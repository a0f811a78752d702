"""`GET /metrics` (`serve --metrics`): the server's metrics in the Prometheus text format.

Each app has a `CollectorRegistry` of its own (never prometheus_client's global one), so tests
and several apps in one process do not collide. What is counted where:

- one `request_done` per finished request, from the usage-row hook of server.worker
  (`ModelWorker._log`): its outcome (`ok`, `invalid`, `error`, `interrupted`), its tokens, and,
  for a generation that ran to its end (`ok`, `invalid`), its TTFT (from queueing, as the usage
  row's) and decode rate, read from the request's core `Response`; a few counter and histogram
  updates per request, nothing per token;
- one `queue_full` per 503 for a full queue (server.http.submit);
- the queues (running, waiting, capacity, cancelled) and the loaded models at scrape time from
  `ModelPool.status()`, the numbers `/health` shows, so the two always agree.

`model` is the name answers report (`BASE:ADAPTER` with an adapter) on request metrics and the
model's id on queue metrics (one queue per model); `front_end` is the dialect (`openai`,
`anthropic`). Imported only by `serve --metrics` (server.app), so no other command, and no
server without the flag, loads prometheus_client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agentic_onnx.router.local_usage import OUTCOMES  # ok, invalid, error, interrupted

if TYPE_CHECKING:
    from agentic_onnx.core.generation.response import Response
    from agentic_onnx.server.pool import ModelPool
    from agentic_onnx.server.worker import Job

_server_log = logging.getLogger("uvicorn.error")

PREFIX = "agentic_onnx_"
FRONT_ENDS = ("openai", "anthropic")
CONTENT_TYPE = CONTENT_TYPE_LATEST
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DECODE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0,
                  1000.0, 2000.0, 5000.0)


def front_end_label(front_end: str) -> str:
    """The usage log's command column (`serve:openai`) as the label (`openai`)."""
    return front_end.removeprefix("serve:")


class ServerMetrics:
    """The metrics of one app: counters and histograms updated as requests finish, gauges read
    from the pool when scraped."""

    def __init__(self, pool: ModelPool) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "front_end")
        self.requests = Counter(f"{PREFIX}requests", "Finished chat requests, by outcome (ok, "
                                "invalid: the answer failed its check, error, interrupted: the "
                                "client went away).", (*labels, "outcome"), registry=self.registry)
        self.prompt_tokens = Counter(f"{PREFIX}prompt_tokens", "Prompt tokens of finished "
                                     "requests (cached ones included).", labels,
                                     registry=self.registry)
        self.cached_tokens = Counter(f"{PREFIX}cached_prompt_tokens", "Prompt tokens reused "
                                     "from the KV cache (cache hits).", labels,
                                     registry=self.registry)
        self.completion_tokens = Counter(f"{PREFIX}completion_tokens", "Generated tokens.",
                                         labels, registry=self.registry)
        self.ttft = Histogram(f"{PREFIX}time_to_first_token_seconds", "From queueing to the "
                              "first visible text or tool call.", labels, buckets=TTFT_BUCKETS_S,
                              registry=self.registry)
        self.decode_rate = Histogram(f"{PREFIX}decode_tokens_per_second", "Completion tokens "
                                     "per second after the first token.", labels,
                                     buckets=DECODE_BUCKETS, registry=self.registry)
        self.rejected = Counter(f"{PREFIX}queue_full_rejections", "Requests refused with 503 "
                                "because the model's queue was full.", labels,
                                registry=self.registry)
        self.registry.register(_PoolCollector(pool))
        for model in pool.served_ids():  # every series from the start, so rate() sees the first
            for front_end in FRONT_ENDS:
                for outcome in OUTCOMES:
                    self.requests.labels(model, front_end, outcome)
                for counter in (self.prompt_tokens, self.cached_tokens, self.completion_tokens,
                                self.rejected):
                    counter.labels(model, front_end)

    def request_done(self, job: Job, response: Response, outcome: str) -> None:
        """A finished request (worker.ModelWorker._log, once per request, on its worker thread).
        Never raises: metrics must not fail a request or stop its worker."""
        try:
            self._count(job, response, outcome)
        except Exception as error:  # noqa: BLE001
            _server_log.warning("Could not update the metrics (%s).", error)

    def _count(self, job: Job, response: Response, outcome: str) -> None:
        labels = (job.model_name, front_end_label(job.front_end))
        self.requests.labels(*labels, outcome).inc()
        usage = response.usage
        if usage is not None:
            self.prompt_tokens.labels(*labels).inc(usage.prompt_tokens)
            self.cached_tokens.labels(*labels).inc(usage.cached_tokens)
            self.completion_tokens.labels(*labels).inc(usage.completion_tokens)
        if outcome not in ("ok", "invalid"):  # the histograms are of finished generations
            return
        timings, started = response.timings, response.started_at
        if timings.ttft_ms is not None and started is not None:
            waited_s = max(started - job.queued_at, 0.0)
            self.ttft.labels(*labels).observe(waited_s + timings.ttft_ms / 1000)
        if timings.decode_tokens_per_s is not None:
            self.decode_rate.labels(*labels).observe(timings.decode_tokens_per_s)

    def queue_full(self, model: str, front_end: str) -> None:
        """A request refused with 503: its model's queue was full (server.http.submit)."""
        self.rejected.labels(model, front_end_label(front_end)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE


class _PoolCollector:
    """Queues and loaded models, read from `ModelPool.status()` (what /health shows) when
    scraped."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        running, waiting, capacity, loaded, cancelled = families
        for model in self.pool.status():
            ready = "running" in model  # while loading, status() names the models only
            loaded.add_metric([model["id"]], 1 if ready else 0)
            if ready:
                running.add_metric([model["id"]], model["running"])
                waiting.add_metric([model["id"]], model["waiting"])
                capacity.add_metric([model["id"]], model["max_queue"])
                cancelled.add_metric([model["id"]], model["cancelled"])
        yield from families

    @staticmethod
    def _families() -> tuple[Any, ...]:
        return (
            GaugeMetricFamily(f"{PREFIX}requests_running", "Requests being generated now.",
                              labels=["model"]),
            GaugeMetricFamily(f"{PREFIX}requests_waiting", "Requests waiting in the model's "
                              "queue.", labels=["model"]),
            GaugeMetricFamily(f"{PREFIX}queue_capacity", "Places in the model's queue "
                              "(--max-queue).", labels=["model"]),
            GaugeMetricFamily(f"{PREFIX}model_loaded", "1 once the model is loaded and "
                              "serving, else 0.", labels=["model"]),
            CounterMetricFamily(f"{PREFIX}requests_cancelled", "Requests stopped or dropped "
                                "from the queue because their client went away.",
                                labels=["model"]),
        )
