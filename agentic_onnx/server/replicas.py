"""One served model on several GPUs (`serve --device-id 0 --device-id 1`): a copy per GPU.

Each copy is a `worker.ModelWorker` of its own (its thread, queue and KV-cache slots, its model
loaded with that GPU's device id), so the copies generate at the same time. A request goes to
the copy with the fewest requests in flight (running and queued), ties to the first GPU
listed: the least-in-flight rule the router's deployments use for base URLs. The choice and the
admission happen under one lock, so two requests arriving together never both see the same
idle copy.

`ModelReplicas` offers what the pool, the HTTP layer and the router's `PoolProvider` use of a
`ModelWorker` (submit, status, busy, stop, the model's facts), so the pool holds either in
its `workers` map; with one device id or none the pool keeps a plain `ModelWorker`, exactly as
before. A conversation's kept KV cache lives in the copy that answered it: a request that lands
on another copy computes its whole prompt there (least-in-flight does not follow the prefix).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


class ModelReplicas:
    """Copies of one model, one `ModelWorker` per GPU, seen as one worker."""

    def __init__(self, model_id: str, workers: Sequence[Any]) -> None:
        if len(workers) < 2:
            raise ValueError("ModelReplicas needs at least two workers")
        self.model_id = model_id
        self.replicas = list(workers)  # worker.ModelWorker, in --device-id order
        self._choosing = threading.Lock()

    @property
    def model(self) -> Any:
        """The first copy's LoadedModel: folder, EP and threads are the same for every copy."""
        return self.replicas[0].model

    @property
    def local(self) -> Any:
        """The first copy's LocalGeneration (an adapter checked there is found for every copy:
        each loads it into its own model on first use)."""
        return self.replicas[0].local

    def submit(self, request: Any, **job: Any) -> Any:
        """Queue the request on the copy with the fewest requests in flight; QueueFullError
        only when that one, and so every copy, is full."""
        with self._choosing:
            return self.least_in_flight().submit(request, **job)

    def least_in_flight(self) -> Any:
        loads = [replica.in_flight for replica in self.replicas]
        return self.replicas[loads.index(min(loads))]

    def hold(self) -> Callable[[], None]:
        """Keep the copies loaded while a request is being admitted (pool.pin)."""
        return self.replicas[0].hold()

    @property
    def busy(self) -> bool:
        return any(replica.busy for replica in self.replicas)

    @property
    def served(self) -> bool:
        return any(replica.served for replica in self.replicas)

    @property
    def last_used(self) -> float:
        return max(replica.last_used for replica in self.replicas)

    @last_used.setter
    def last_used(self, when: float) -> None:
        for replica in self.replicas:
            replica.last_used = when

    def status(self) -> dict[str, Any]:
        """The model's numbers (what /health and /metrics show), summed over the copies, and
        each copy's own under `workers`."""
        parts = [replica.status() for replica in self.replicas]
        summed = {key: sum(part[key] for part in parts)
                  for key in ("running", "waiting", "max_queue", "cancelled", "batched")}
        return {"id": self.model_id, **summed, "kv_cache": _summed_kv(parts),
                "workers": [_worker_row(part) for part in parts]}

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def replicas_of(worker: Any) -> list[Any]:
    """The `ModelWorker`s behind a pool entry: its copies, or the worker itself."""
    return list(getattr(worker, "replicas", [worker]))


def worker_rows(worker: Any) -> list[dict[str, Any]]:
    """Each copy's GPU and queue (what `ps` shows per worker)."""
    return [_worker_row(replica.status()) for replica in replicas_of(worker)]


def _worker_row(status: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": status.get("device_id"), "running": status["running"],
            "waiting": status["waiting"]}


def _summed_kv(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The copies' kept KV caches together: slots, their bound, and the megabytes each knows."""
    caches = [part["kv_cache"] for part in parts]
    summed: dict[str, Any] = {key: sum(cache[key] for cache in caches)
                              for key in ("slots", "max_slots")}
    for key in ("mb", "budget_mb"):
        if all(key in cache for cache in caches):
            summed[key] = round(sum(cache[key] for cache in caches), 1)
    return summed
