"""A served model's worker: one thread, with a bounded queue in front of it.

A loaded model (its genai generator) is not thread-safe, so each model has one thread that runs
one generation at a time (or one batch of waiting plain requests: core.generation.batch);
requests wait in a queue of `max_queue` places, and one more arrives
to a full queue as `QueueFullError` (HTTP 503 with Retry-After). A request whose client goes
away is cancelled: taken out of the queue at once, or stopped after its next token.

A request is a core `ChatRequest`, answered by the model's `LocalGeneration` (the one local
entry `run` and `chat` use too: the plain/schema/tools/images dispatch, the prefix cache) and
consumed through a core `Response`, as the CLI consumes it. The client's queue gets the stream's
events, then the finished `Response` (its answer checked against the request: `Job.answer_error`)
or the `AgenticError` the request ended in; the dialect modules only translate those.

Each worker's LocalGeneration keeps the KV caches of several conversations (`kv_slots`, within
a memory budget: core.generation.prefix_cache), so a request that continues one of them (agents
resend the whole history every turn) feeds the model only its new tokens. Each slot belongs to
one tenant (`Job.tenant`, see server.http.tenant): a request reuses only its own tenant's slots,
so neither its `cached_tokens` nor its speed can tell it anything about another client's prompt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agentic_onnx.core.errors import (
    AgenticError,
    ExitCode,
    GenerationError,
    ModelNotFoundError,
)
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response

_server_log = logging.getLogger("uvicorn.error")


class QueueFullError(AgenticError):
    """Every place in a model's queue is taken: a 503 with Retry-After."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 503

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("The model's queue is full.", "Retry after the time in Retry-After.")
        self.retry_after_s = retry_after_s


WAITING, RUNNING, DONE, CANCELLED = "waiting", "running", "done", "cancelled"


class Job:
    """One request's place in a worker: the events come back on `next_item` (an HTTP client's
    request), or through `deliver` (a routed request's local candidate, on the router's thread)."""

    provider = "onnx"

    def __init__(self, worker: ModelWorker, request: ChatRequest,
                 loop: asyncio.AbstractEventLoop | None = None, tenant: str = "",
                 front_end: str = "serve", model_name: str = "", metrics: Any = None,
                 log: bool = True, deliver: Callable[[Any], None] | None = None) -> None:
        self.request = request
        self.tenant = tenant  # who may reuse this request's KV cache (server.http.tenant)
        self.front_end = front_end  # the usage log's command column
        self.model_name = model_name or worker.model_id  # what answers report (BASE:ADAPTER)
        self.metrics = metrics  # server.metrics.ServerMetrics (serve --metrics), else None
        self.queued_at = time.perf_counter()
        self.answer_error: AgenticError | None = None  # set before the finished Response is put
        self.log = log  # False: the usage row is another's (the router's, or the client's)
        self.logged = False
        self.state = WAITING
        self._worker = worker
        self._loop = loop
        self._deliver = deliver
        self._items: asyncio.Queue[Any] | None = asyncio.Queue() if deliver is None else None

    async def next_item(self) -> Any:
        assert self._items is not None
        return await self._items.get()

    def cancel(self) -> None:
        """The client is gone (or the request is over): free the slot, stop generating."""
        self._worker.cancel(self)

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def put(self, item: Any) -> None:
        if self._deliver is not None:
            self._deliver(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)  # type: ignore[union-attr]
        except RuntimeError:  # the event loop is closed: the server is stopping
            self.state = CANCELLED


class ModelWorker:
    """One model, one thread, one generation at a time."""

    def __init__(self, model_id: str, model: Any, max_queue: int, kv_slots: int = 1,
                 kv_budget_bytes: int | None = None, batch_size: int = 1) -> None:
        """`kv_slots`, `kv_budget_bytes`: the conversations whose KV caches the model keeps,
        and their memory (core.generation.prefix_cache); `batch_size`: how many waiting plain
        requests may decode together (core.generation.batch; 1: one at a time)."""
        from agentic_onnx.core.generation.local import LocalGeneration

        self.model_id = model_id
        self.model = model
        self.max_queue = max_queue
        _bind_device(model)  # the KV-cache probe below makes a generator on the model's GPU
        self.local = LocalGeneration(model, slots=kv_slots, kv_budget_bytes=kv_budget_bytes)
        self.last_used = time.monotonic()  # the end of its last request (or its load)
        self.pending = 0  # requests being admitted (pool.pin): not yet queued, not unloadable
        self._stopped = False
        self.served = False  # it answered a request since it was loaded
        self.batch_size = max(1, batch_size)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._held: list[Job | None] = []  # taken from the queue, not batched: served next
        self._batched = 0  # requests answered in a batch
        self._lock = threading.Lock()
        self._admitted = 0  # waiting or running
        self._running = 0
        self._cancelled = 0  # requests stopped or dropped because their client went away
        self._last_duration_s = 1.0
        self._thread = threading.Thread(target=self._serve, name=f"model-{model_id}", daemon=True)
        self._thread.start()

    def submit(self, request: ChatRequest, **job: Any) -> Job:
        """Queue a request, or raise QueueFullError when `max_queue` already wait. `job`: the
        Job's tenant, front_end, model_name, metrics, log and deliver (without `deliver`, the
        items go to the running event loop's queue)."""
        loop = asyncio.get_running_loop() if job.get("deliver") is None else None
        queued = Job(self, request, loop, **job)
        with self._lock:
            if self._stopped:  # unloaded meanwhile (the service's keep-alive): a retry loads it
                raise ModelNotServedError(self.model_id, [])
            if self._admitted >= self.max_queue + 1:
                raise QueueFullError(self._retry_after())
            self._admitted += 1
        self._jobs.put(queued)
        return queued

    def cancel(self, job: Job) -> None:
        with self._lock:
            if job.state == WAITING:
                self._admitted -= 1
                self._cancelled += 1
            if job.state in (WAITING, RUNNING):
                job.state = CANCELLED

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.model_id, "running": self._running,
                    "waiting": self._admitted - self._running, "max_queue": self.max_queue,
                    "cancelled": self._cancelled, "batched": self._batched,
                    "kv_cache": self.local.kv_usage(),
                    "device_id": getattr(self.model, "device_id", None)}

    @property
    def in_flight(self) -> int:
        """Requests running or queued (what server.replicas balances on)."""
        with self._lock:
            return self._admitted

    def hold(self) -> Callable[[], None]:
        """Keep this worker loaded while a request is being admitted (pool.pin): keep-alive and
        the memory budget pass over it until the release is called."""
        with self._lock:
            self.pending += 1

        def release() -> None:
            with self._lock:
                self.pending -= 1

        return release

    @property
    def busy(self) -> bool:
        """Requests running, waiting or being admitted."""
        with self._lock:
            return self._admitted > 0 or self.pending > 0

    def stop(self) -> None:
        """End the thread once the requests already queued are done; later ones are refused."""
        with self._lock:
            self._stopped = True
            self._jobs.put(None)

    def _retry_after(self) -> int:
        waiting = max(self._admitted, 1)
        return min(60, max(1, math.ceil(self._last_duration_s * waiting)))

    def _serve(self) -> None:
        _bind_device(self.model)  # this thread generates on the model's GPU
        while (job := self._take()) is not None:
            companions = self._companions(job)
            with self._lock:
                jobs = [queued for queued in (job, *companions) if queued.state == WAITING]
                for queued in jobs:
                    queued.state = RUNNING
                self._running = len(jobs)
            if not jobs:
                continue
            started = time.perf_counter()
            try:
                self._run(jobs[0]) if len(jobs) == 1 else self._run_batch(jobs)
            except Exception as error:  # noqa: BLE001 - a bug must not stop the model's thread
                _server_log.exception("A request failed unexpectedly")
                for queued in jobs:
                    queued.put(GenerationError(f"Generation failed: {error}"))
            finally:
                with self._lock:
                    self._running = 0
                    self._admitted -= len(jobs)
                    for queued in jobs:
                        if queued.state == CANCELLED:
                            self._cancelled += 1
                        queued.state = DONE
                self._last_duration_s = (time.perf_counter() - started) / len(jobs)
                self.last_used, self.served = time.monotonic(), True

    def _take(self) -> Job | None:
        return self._held.pop(0) if self._held else self._jobs.get()

    def _companions(self, job: Job) -> list[Job]:
        """Waiting requests that may decode together with `job` (core.generation.batch): plain,
        the same sampling, and not continuing a conversation whose KV cache is kept here (that
        one saves more by reusing its cache). The others keep their place, in order."""
        from agentic_onnx.core.generation.batch import batch_key

        if self.batch_size < 2 or not self._batchable(job):
            return []
        key, companions, skipped = batch_key(job.request), [], []
        while len(companions) < self.batch_size - 1:
            try:
                queued = self._held.pop(0) if self._held else self._jobs.get_nowait()
            except queue.Empty:
                break
            if queued is not None and queued.state == WAITING and self._batchable(queued) \
                    and batch_key(queued.request) == key:
                companions.append(queued)
            else:
                skipped.append(queued)
                if queued is None:  # stopping: nothing after it is taken
                    break
        self._held[:0] = skipped
        return companions

    def _batchable(self, job: Job) -> bool:
        from agentic_onnx.core.generation.batch import batchable

        return batchable(job.request) and not self.local.continues(job.request, job.tenant)

    def _run_batch(self, jobs: list[Job]) -> None:
        """Decode `jobs` together, one event of each in turn; alone when they cannot share a
        generator after all (core.generation.batch.plan_batch)."""
        from agentic_onnx.core.generation.batch import plan_batch

        try:
            batch = plan_batch(self.model, [job.request for job in jobs])
        except AgenticError:
            batch = None  # one of them cannot run (too long a prompt): each hears its own error
        if batch is None:
            for job in jobs:
                self._run(job)
            return
        with self._lock:
            self._batched += len(jobs)
        responses = [Response(events=stream, provider="onnx", model=job.model_name,
                              execution_provider=self.model.execution_provider)
                     for job, stream in zip(jobs, batch.streams())]
        streams = {index: iter(response) for index, response in enumerate(responses)}
        while streams:
            for index, events in list(streams.items()):
                job, response = jobs[index], responses[index]
                try:
                    if job.cancelled:
                        raise GeneratorExit
                    job.put(next(events))
                    continue
                except StopIteration:
                    job.answer_error = job.request.answer_error(response)
                    self._end(job, response, None)
                except GeneratorExit:  # its client went away: no answer sent, the row counts
                    self._log(job, response, "interrupted")
                except AgenticError as error:
                    self._end(job, response, error)
                except Exception as error:  # noqa: BLE001 - the client hears why
                    self._end(job, response, GenerationError(f"Generation failed: {error}"))
                events.close()  # type: ignore[attr-defined]
                del streams[index]

    def _run(self, job: Job) -> None:
        response = Response(events=(), provider="onnx", model=job.model_name,
                            execution_provider=self.model.execution_provider)
        try:
            response.events = self.local.stream(job.request, job.tenant)
            events = iter(response)
            try:
                for event in events:
                    if job.cancelled:
                        break
                    job.put(event)
            finally:
                events.close()  # type: ignore[attr-defined]
        except AgenticError as error:
            self._end(job, response, error)
            return
        except Exception as error:  # noqa: BLE001 - the client hears why; the server lives on
            self._end(job, response, GenerationError(f"Generation failed: {error}"))
            return
        if job.cancelled:  # its client went away: no answer sent, the row counts
            self._log(job, response, "interrupted")
            return
        job.answer_error = job.request.answer_error(response)
        self._end(job, response, None)

    def _end(self, job: Job, response: Response, error: AgenticError | None) -> None:
        """Log the request, mark the job done, then let its client hear the end: the usage row
        is written first (as `run` logs at the end of its stream), so a client that reads
        `agentic-onnx usage` next sees it; and the job is done before the client's closing
        `cancel()`, which is then a no-op rather than a cancellation."""
        if error is not None:
            self._log(job, response, "error", error)
        else:
            self._log(job, response, "invalid" if job.answer_error else "ok", job.answer_error)
        with self._lock:
            if job.state == RUNNING:
                job.state = DONE
        job.put(error if error is not None else response)

    @staticmethod
    def _log(job: Job, response: Response, outcome: str, error: AgenticError | None = None) -> None:
        """The request's usage row (router.local_usage), once."""
        from agentic_onnx.router.local_usage import log_local

        if not job.logged:
            job.logged = True
            if job.log:
                log_local(job.front_end, response, outcome,
                          error.one_line() if error is not None else None, job.queued_at,
                          on_failure=_server_log.warning)
            if job.metrics is not None:
                job.metrics.request_done(job, response, outcome)


class ModelNotServedError(ModelNotFoundError):
    """A request named a model this server does not serve (the API's 404, never another model)."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        listed = f"served: {', '.join(served)}" if served else "no model is loaded"
        super().__init__(f"The model {name!r} is not served here; {listed}.")
        self.name = name


def _bind_device(model: Any) -> None:
    """The calling thread generates on `model`'s GPU (core.generation.engine.LoadedModel)."""
    bind = getattr(model, "bind_device", None)
    if bind is not None:
        bind()
