"""The served models: one worker thread per model, with a bounded queue in front of it.

A loaded model (its genai generator) is not thread-safe, so each model has one thread that runs
one generation at a time; requests wait in a queue of `max_queue` places, and one more arrives
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

No web framework here: the HTTP layer hands us requests and reads events back through an
asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentic_onnx.core.errors import (
    AgenticError,
    ExitCode,
    GenerationError,
    ModelNotFoundError,
)
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.server.replicas import ModelReplicas, replicas_of, worker_rows


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


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    folder: Any  # core.models.model_folder.ModelFolder
    aliases: tuple[str, ...] = ()  # other names a request may use (the alias `serve` was given)
    adapters: tuple[tuple[str, Any], ...] = ()  # LoRA adapters (name, file): served as BASE:NAME

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model_id, *self.aliases)


class ModelNotServedError(ModelNotFoundError):
    """A request named a model this server does not serve (the API's 404, never another model)."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        listed = f"served: {', '.join(served)}" if served else "no model is loaded"
        super().__init__(f"The model {name!r} is not served here; {listed}.")
        self.name = name


class ModelPool:
    """The models `serve` was started with: loaded in the background, so `/health` can say 503
    while they load. A request without a model name goes to the first model; one that names a
    model not served here is refused (ModelNotServedError)."""

    def __init__(self, specs: Sequence[ModelSpec], execution_provider: str = "auto",
                 threads: int | None = None, max_queue: int = 16, kv_slots: int | None = None,
                 kv_cache_mb: float | None = None, keep_alive_s: float | None = None,
                 memory_budget_bytes: int | None = None, on_demand: bool = False,
                 device_ids: Sequence[int] = (), batch_size: int | None = None) -> None:
        """`kv_slots`: conversations kept per model (default core.generation.kv_budget's);
        `kv_cache_mb`: their KV caches' memory per model (default: half the memory available
        once the models are loaded, shared by the models). The service (`serve --service`):
        `on_demand` loads a model a request names; `keep_alive_s` unloads an idle model (None:
        never); `memory_budget_bytes` bounds the loaded models' weights (server.residency).
        `device_ids`: the GPUs each model is loaded on; two or more: a copy per GPU, each with
        its own worker (server.replicas), its KV-cache slots and its share of the budgets.
        `batch_size`: waiting plain requests decoded together per model (core.generation.batch;
        None: its default for the EP the model runs on)."""
        from agentic_onnx.core.generation.kv_budget import DEFAULT_KV_SLOTS

        self.specs = list(specs)
        self.execution_provider = execution_provider
        self.threads = threads
        self.device_ids = tuple(device_ids)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.kv_slots = kv_slots or DEFAULT_KV_SLOTS
        self.kv_cache_mb = kv_cache_mb
        self.workers: dict[str, ModelWorker | ModelReplicas] = {}  # per served model id
        self.error: AgenticError | None = None
        self.warnings: list[str] = []
        self.metrics: Any = None  # server.metrics.ServerMetrics, set by create_app(metrics_on=True)
        self.keep_alive_s = keep_alive_s
        self.memory_budget_bytes = memory_budget_bytes
        self.on_demand = on_demand
        self._keep_alive: dict[str, float | None] = {}  # per model, when a request set its own
        self._sizes: dict[str, int] = {}
        self._changing = threading.RLock()  # loads and unloads, one at a time
        self._closed = threading.Event()
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.error is None

    def load(self) -> None:
        """Load every model (blocking; `serve` runs it on a thread)."""
        try:
            models = []
            for spec in self.specs:
                models.append(self._load_copies(spec.folder))
                self.warnings.extend(dict.fromkeys(warning for copy in models[-1]
                                                   for warning in copy.warnings))
            for spec, copies in zip(self.specs, models):  # the budget, once all are loaded
                self.workers[spec.model_id] = self._worker(spec.model_id, copies, len(models))
                self._sizes[spec.model_id] = _weights(copies[0]) * len(copies)
        except AgenticError as error:
            self.error = error
        finally:
            self._ready.set()
        if self.keep_alive_s is not None or self.on_demand:
            threading.Thread(target=self._expire, name="keep-alive", daemon=True).start()

    def _load_copies(self, folder: Any) -> list[Any]:
        """The model loaded once per device id (once, on the EP's default GPU, without ids)."""
        from agentic_onnx.core.generation.engine import load_model

        first, *others = self.device_ids or (None,)
        copies = [load_model(folder, self.execution_provider, self.threads, device_id=first)]
        if others and copies[0].execution_provider != "cuda":
            from agentic_onnx.core.errors import UsageError
            from agentic_onnx.core.machine.execution_provider import EP_LABELS

            raise UsageError(f"Several --device-id need CUDA; {folder.name} runs on "
                             f"{EP_LABELS[copies[0].execution_provider]}.",
                             "Pass one --device-id, or -e cuda "
                             "(DirectML uses one GPU per process).")
        # The other GPUs on the EP the first chose: a copy that fails to start is an error, never
        # a silent CPU copy (`auto` falls back only for the first).
        return [*copies, *(load_model(folder, copies[0].execution_provider, self.threads,
                                      device_id=device_id) for device_id in others)]

    def _worker(self, model_id: str, copies: list[Any], models: int) -> ModelWorker | ModelReplicas:
        """A ModelWorker for one copy; for several, their ModelReplicas. Each copy's KV caches
        get the budget of one model (`--kv-cache-mb`, else a share of its own GPU's memory)."""
        from agentic_onnx.core.generation.batch import default_batch_size
        from agentic_onnx.core.generation.kv_budget import MIB, default_budget_bytes

        workers = [ModelWorker(model_id, loaded, self.max_queue, self.kv_slots,
                               int(self.kv_cache_mb * MIB) if self.kv_cache_mb else
                               default_budget_bytes(loaded.execution_provider, models,
                                                    loaded.device_id),
                               self.batch_size or default_batch_size(loaded.execution_provider))
                   for loaded in copies]
        return workers[0] if len(workers) == 1 else ModelReplicas(model_id, workers)

    # -- the service: models loaded on demand, kept alive, unloaded -------------------------

    def ensure_loaded(self, name: str | None, keep_alive_s: object = "default") -> dict[str, Any]:
        """The model `name` names (an id, alias, `onnx add` name or folder path), loaded now if
        it is not: what `/api/load` answers (its id, EP, load time; 0 when it was resident).
        Idle models are unloaded first when the new one would not fit the memory budget."""
        from agentic_onnx.core.generation.engine import weights_size
        from agentic_onnx.core.models.resolve import resolve
        from agentic_onnx.server.residency import to_unload

        with self._changing:
            if name and self.serves(name) or not name and self.specs:
                spec = self.spec_for(name)
                self._set_keep_alive(spec.model_id, keep_alive_s)
                return self._loaded_json(spec.model_id, 0.0, [])
            if not self.on_demand:
                raise ModelNotServedError(name or "", self.served_ids())
            resolution = resolve(name)
            model_id, aliases = served_names(name, resolution)
            loaded_as = self._id_of_folder(resolution.folder)
            if loaded_as is not None:  # another name of a loaded model (a path, an alias)
                self._add_aliases(loaded_as, (*aliases, *((name,) if name else ())))
                self._set_keep_alive(loaded_as, keep_alive_s)
                return self._loaded_json(loaded_as, 0.0, [])
            if model_id in self.workers:  # the same name for another folder: an id of its own
                model_id = f"{model_id}-{_path_digest(resolution.folder)}"
            # Each copy (one per --device-id) holds its own weights.
            needed = weights_size(resolution.folder) * max(len(self.device_ids), 1)
            for idle in to_unload(self._residents(), needed, self.memory_budget_bytes):
                self.unload(idle)
            copies = self._load_copies(resolution.folder)
            loaded = copies[0]
            self.workers[model_id] = self._worker(model_id, copies, len(self.workers) + 1)
            self._sizes[model_id] = needed
            extra = (name,) if name and name != model_id else ()
            self.specs = [*self.specs, ModelSpec(model_id, resolution.folder,
                                        tuple(dict.fromkeys((*aliases, *extra))),
                                        adapters=installed_adapters_of(resolution.folder))]
            self._set_keep_alive(model_id, keep_alive_s)
            return self._loaded_json(model_id, loaded.load_s, loaded.warnings)

    def _id_of_folder(self, folder: Any) -> str | None:
        """The id a folder is loaded under, if it is loaded."""
        wanted = folder.path.resolve()
        return next((spec.model_id for spec in self.specs
                     if spec.folder.path.resolve() == wanted and spec.model_id in self.workers),
                    None)

    def pin(self, name: str | None) -> Callable[[], None] | None:
        """Keep the model `name` names loaded while a request is being admitted (keep-alive and
        the memory budget pass over it); the release, or None when it is not loaded."""
        try:
            worker = self.worker_for(name)
        except (KeyError, ModelNotServedError):
            return None
        return worker.hold()

    def unload(self, name: str) -> str:
        """Unload a model now (its queued requests are answered first); its id."""
        from agentic_onnx.core.generation.engine import forget_model

        with self._changing:
            spec = self.spec_for(name)
            worker = self.workers.pop(spec.model_id)
            self.specs = [kept for kept in self.specs if kept.model_id != spec.model_id]
            self._sizes.pop(spec.model_id, None)
            self._keep_alive.pop(spec.model_id, None)
            worker.stop()
            for replica in replicas_of(worker):
                forget_model(replica.model)
            return spec.model_id

    def _set_keep_alive(self, model_id: str, keep_alive_s: object) -> None:
        if keep_alive_s != "default":
            self._keep_alive[model_id] = keep_alive_s  # type: ignore[assignment]
        self.workers[model_id].last_used = time.monotonic()

    def keep_alive_of(self, model_id: str) -> float | None:
        return self._keep_alive.get(model_id, self.keep_alive_s)

    def _residents(self) -> list[Any]:
        from agentic_onnx.server.residency import Resident

        return [Resident(model_id, self._sizes.get(model_id, 0) + _kv_bytes(worker),
                         worker.last_used, self.keep_alive_of(model_id), worker.busy,
                         worker.served)
                for model_id, worker in list(self.workers.items())]

    def _expire(self) -> None:
        """Unload models whose keep-alive ran out (checked every half second until close)."""
        from agentic_onnx.server.residency import expired

        while not self._closed.wait(0.5):
            try:
                with self._changing:
                    for model_id in expired(self._residents(), time.monotonic()):
                        self.unload(model_id)
            except Exception:  # noqa: BLE001 - keep-alive must go on
                _server_log.exception("Could not unload an expired model")

    def _add_aliases(self, model_id: str, names: tuple[str, ...]) -> None:
        self.specs = [ModelSpec(spec.model_id, spec.folder,
                                tuple(dict.fromkeys((*spec.aliases, *names))), spec.adapters)
                      if spec.model_id == model_id else spec for spec in self.specs]

    def _loaded_json(self, model_id: str, load_s: float, warnings: list[str]) -> dict[str, Any]:
        worker = self.workers[model_id]
        return {"model": model_id, "execution_provider": worker.model.execution_provider,
                "threads": worker.model.threads, "load_s": round(load_s, 4),
                "warnings": list(warnings)}

    def resident(self) -> list[dict[str, Any]]:
        """What `/api/ps` lists: each loaded model, its memory, queue and when it unloads."""
        now = time.monotonic()
        listed = []
        workers = dict(self.workers)
        for resident in self._residents():
            worker = workers.get(resident.model_id)
            if worker is None:
                continue
            expires = resident.expires_at()
            listed.append({**worker.status(), "execution_provider": worker.model.execution_provider,
                           "workers": worker_rows(worker),
                           "memory_bytes": resident.size_bytes,
                           "keep_alive_s": resident.keep_alive_s,
                           "unloads_in_s": None if expires is None or resident.busy
                           else round(max(expires - now, 0.0), 1)})
        return listed

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def spec_for(self, name: str | None) -> ModelSpec:
        """The served model that `name` names (its id or an alias); the first for no name."""
        if not name and self.specs:
            return self.specs[0]
        name = name or ""
        base, _, adapter = name.partition(":")
        for spec in self.specs:
            if name in spec.names or (adapter and base in spec.names
                                      and adapter in dict(spec.adapters)):
                return spec
        raise ModelNotServedError(name, self.served_ids())

    def serves(self, name: str | None) -> bool:
        """Whether `name` (an id, alias or BASE:ADAPTER; none: the first model) is served here."""
        try:
            self.spec_for(name)
        except ModelNotServedError:
            return False
        return bool(self.specs)

    def served_ids(self) -> list[str]:
        """What /v1/models lists: each model, then each of its adapters as BASE:ADAPTER."""
        return [served for spec in self.specs for served in
                (spec.model_id, *(f"{spec.model_id}:{name}" for name, _ in spec.adapters))]

    def adapter_for(self, name: str | None) -> str | None:
        """The adapter a request's model name selects (BASE:ADAPTER), else None."""
        spec = self.spec_for(name)
        if not name or name in spec.names:
            return None
        return name.partition(":")[2]

    def served_name(self, name: str | None) -> str:
        """The id an answer reports: the model's, with `:ADAPTER` when one was chosen."""
        spec = self.spec_for(name)
        adapter = self.adapter_for(name)
        return f"{spec.model_id}:{adapter}" if adapter else spec.model_id

    def worker_for(self, name: str | None) -> ModelWorker | ModelReplicas:
        return self.workers[self.spec_for(name).model_id]

    def status(self) -> list[dict[str, Any]]:
        if not self.ready:
            return [{"id": spec.model_id} for spec in self.specs]
        return [worker.status() for worker in list(self.workers.values())]

    def close(self) -> None:
        self._closed.set()
        for worker in list(self.workers.values()):
            worker.stop()


def served_names(name: str | None, resolution: Any) -> tuple[str, tuple[str, ...]]:
    """The id a served model is published under, and the other names requests may use: a store
    model is its id (an alias it was chosen by also works); a model added with `onnx add` is its
    name; a folder is the folder's name."""
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.names import is_model_name

    named = name is not None and is_model_name(name)
    if resolution.model_id:
        return resolution.model_id, ((name,) if named and name != resolution.model_id else ())
    if named and get_custom_model(name) is not None:  # type: ignore[arg-type]
        return name, ()  # type: ignore[return-value]
    return resolution.folder.name, ()


def installed_adapters_of(folder: Any) -> tuple[tuple[str, Any], ...]:
    """The LoRA adapters kept with a model (core.models.adapters), served as BASE:ADAPTER."""
    from agentic_onnx.core.models.adapters import installed_adapters

    return tuple(installed_adapters(folder.path).items())


def _weights(loaded: Any) -> int:
    from agentic_onnx.core.generation.engine import weights_size

    return weights_size(loaded.folder)


def _path_digest(folder: Any) -> str:
    import hashlib

    return hashlib.sha256(str(folder.path.resolve()).encode()).hexdigest()[:8]


def _kv_bytes(worker: Any) -> int:
    """The memory a worker's kept KV caches hold now (its slots; every copy's), for the
    service's budget."""
    from agentic_onnx.core.generation.kv_budget import MIB

    return int(sum(float(replica.local.kv_usage().get("mb") or 0.0)
                   for replica in replicas_of(worker)) * MIB)


def _bind_device(model: Any) -> None:
    """The calling thread generates on `model`'s GPU (core.generation.engine.LoadedModel)."""
    bind = getattr(model, "bind_device", None)
    if bind is not None:
        bind()
