"""The served models: one worker thread per model, with a bounded queue in front of it.

A loaded model (its genai generator) is not thread-safe, so each model has one thread that runs
one generation at a time; requests wait in a queue of `max_queue` places, and one more arrives
to a full queue as `QueueFullError` (HTTP 503 with Retry-After). A request whose client goes
away is cancelled: taken out of the queue at once, or stopped after its next token.

Each worker keeps a `PrefixCache`, so a request that repeats the previous conversation (agents
resend the whole history every turn) feeds the model only its new tokens. The cache belongs to
one tenant at a time (`Job.tenant`, see server.http.tenant): a request from another tenant
starts from an empty cache, so neither its `cached_tokens` nor its speed can tell it anything
about another client's prompt.

No web framework here: the HTTP layer hands us messages and options and reads events back
through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentic_onnx.core.generation.engine import Message
from agentic_onnx.core.errors import AgenticError, UsageError
from agentic_onnx.core.generation.events import Finish, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.server import usage_rows
from agentic_onnx.server.usage_rows import Served


class QueueFullError(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("The model's queue is full.")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Started:
    """The request left the queue and its prompt is in the model."""

    prompt_tokens: int
    cached_tokens: int  # of the prompt, reused from the KV cache


@dataclass(frozen=True)
class Ended:
    """The stream is over. `stop_sequence` is the stop string that ended it, if one did."""

    stop_sequence: str | None


@dataclass(frozen=True)
class Failed:
    message: str
    status: int = 500  # 400 when the request itself is at fault (a prompt longer than the context)


WAITING, RUNNING, DONE, CANCELLED = "waiting", "running", "done", "cancelled"


class Job:
    """One request's place in a worker: the events come back on `next_item`."""

    def __init__(self, worker: ModelWorker, messages: Sequence[Message],
                 options: GenerationOptions, loop: asyncio.AbstractEventLoop,
                 tools: Sequence[Any] = (), tool_choice: Any = None,
                 response_format: Any = None, images: Sequence[Any] = (),
                 tenant: str = "", adapter: Any = None, front_end: str = "serve") -> None:
        self.served = Served(front_end, worker.model_id, time.perf_counter())  # the usage row
        self.adapter = adapter  # a LoRA adapter file of the model (core.models.adapters), or None
        self.tenant = tenant  # who may reuse this request's KV cache (server.http.tenant)
        self.messages = list(messages)
        self.images = list(images)  # core.generation.vision.ImageInput, where the messages' markers stand
        self.options = options
        self.tools = list(tools)  # core.answers.tools.Tool: a reply may be a call (core.answers.tools)
        self.tool_choice = tool_choice  # core.answers.tools.ToolChoice, None for auto
        self.response_format = response_format  # core.answers.structured.ResponseFormat
        self.state = WAITING
        self._worker = worker
        self._loop = loop
        self._items: asyncio.Queue[Any] = asyncio.Queue()

    async def next_item(self) -> Any:
        return await self._items.get()

    def cancel(self) -> None:
        """The client is gone (or the request is over): free the slot, stop generating."""
        self._worker.cancel(self)

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: the server is stopping
            self.state = CANCELLED


class ModelWorker:
    """One model, one thread, one generation at a time."""

    def __init__(self, model_id: str, model: Any, max_queue: int) -> None:
        from agentic_onnx.core.generation.conversation import PrefixCache

        self.model_id = model_id
        self.model = model
        self.max_queue = max_queue
        self._cache = PrefixCache(model)
        self._cache_tenant = ""  # whose prompt the KV cache holds
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # waiting or running
        self._running = 0
        self._cancelled = 0  # requests stopped or dropped because their client went away
        self._last_duration_s = 1.0
        self._thread = threading.Thread(target=self._serve, name=f"model-{model_id}", daemon=True)
        self._thread.start()

    def submit(self, messages: Sequence[Message], options: GenerationOptions,
               **answer: Any) -> Job:
        """Queue a request, or raise QueueFullError when `max_queue` already wait. `answer`:
        the Job's tools, tool_choice, response_format, images and tenant."""
        job = Job(self, messages, options, asyncio.get_running_loop(), **answer)
        with self._lock:
            if self._admitted >= self.max_queue + 1:
                raise QueueFullError(self._retry_after())
            self._admitted += 1
        self._jobs.put(job)
        return job

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
                    "cancelled": self._cancelled}

    def stop(self) -> None:
        self._jobs.put(None)

    def _retry_after(self) -> int:
        waiting = max(self._admitted, 1)
        return min(60, max(1, math.ceil(self._last_duration_s * waiting)))

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                if job.state != WAITING:
                    continue
                job.state = RUNNING
                self._running = 1
            started = time.perf_counter()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = 0
                    self._admitted -= 1
                    if job.state == CANCELLED:
                        self._cancelled += 1
                    job.state = DONE
                self._last_duration_s = time.perf_counter() - started

    def _stream(self, job: Job) -> Any:
        """The job's events: plain, with tools, constrained to a schema, or with images."""
        if job.images:
            return self._vision_stream(job)
        if job.adapter is not None and (job.tools or job.response_format is not None):
            raise UsageError("A LoRA adapter cannot be combined with tools or response_format yet.")
        if job.adapter is not None:  # the KV cache is never reused across adapters (PrefixCache)
            return self._cache.stream(job.messages, job.options, adapter=job.adapter)
        if job.tools:
            from agentic_onnx.core.answers.tools import AUTO, stream_with_tools

            return stream_with_tools(self.model, job.messages, job.options, job.tools,
                                     job.tool_choice or AUTO, stream=self._cache.stream)
        if job.response_format is not None:
            return self._cache.stream(job.messages, job.options,
                                      guidance=job.response_format.guidance())
        return self._cache.stream(job.messages, job.options)

    def _vision_stream(self, job: Job) -> Any:
        """A request with images: processed and counted first (errors are the request's, a 400),
        then run on a generator of its own. The kept generator is reset first, so that two KV
        caches are never held at once; the next text request starts it again."""
        from agentic_onnx.core.generation.conversation import PrefillStats
        from agentic_onnx.core.generation.vision import prepare_vision_prompt

        prepared = prepare_vision_prompt(self.model, job.messages, job.images)
        self._cache.reset()
        self._cache.last = PrefillStats(prepared.prompt_tokens, 0, (), False)
        self._cache.generated_ids = []
        guidance = job.response_format.guidance() if job.response_format is not None else None
        yield from self.model.stream(job.messages, job.options, images=prepared,
                                     tools=[tool.to_openai() for tool in job.tools] or None,
                                     guidance=guidance)

    def _run(self, job: Job) -> None:
        if job.tenant != self._cache_tenant:  # never reuse (or report) another tenant's prefix
            self._cache.reset()
            self._cache_tenant = job.tenant
        self._generate(job)
        if job.served.ended_at is None:  # its client went away: no answer sent, the row counts
            self._record(job, "interrupted")

    def _generate(self, job: Job) -> None:
        stream = self._stream(job)
        texts: list[str] = []
        finish = None
        try:
            for index, event in enumerate(stream):
                if index == 0:
                    prefill = self._cache.last
                    job.put(Started(prefill.prompt_tokens if prefill else 0,
                                    prefill.reused_tokens if prefill else 0))
                if job.cancelled:
                    break
                self._note(job.served, event)
                if isinstance(event, TextDelta):
                    texts.append(event.text)
                elif isinstance(event, Finish):
                    finish = event.reason
                job.put(event)
        except AgenticError as error:
            self._fail(job, Failed(error.one_line(), 400 if isinstance(error, UsageError) else 500))
            return
        except Exception as error:  # noqa: BLE001 - the client hears why; the server lives on
            self._fail(job, Failed(f"Generation failed: {error}"))
            return
        finally:
            stream.close()
        if not job.cancelled:
            ended = Ended(self._stop_sequence(job.options, "".join(texts), finish))
            self._record(job, "ok")
            self._end(job, ended)

    @staticmethod
    def _note(served: Served, event: Any) -> None:
        """What the usage row needs from the stream: the first visible output, the counts."""
        if served.first_text_at is None and isinstance(event, (TextDelta, ToolCallDelta)):
            served.first_text_at = time.perf_counter()
        elif isinstance(event, Usage):
            served.prompt_tokens, served.completion_tokens = (event.prompt_tokens,
                                                              event.completion_tokens)

    def _fail(self, job: Job, failed: Failed) -> None:
        job.served.error = failed.message
        self._record(job, "error")
        self._end(job, failed)

    @staticmethod
    def _record(job: Job, outcome: str) -> None:
        """The request's usage row, written before its client hears the end (as `run` logs at
        the end of its stream), so a client that reads `agentic-onnx usage` next sees it."""
        job.served.ended_at, job.served.outcome = time.perf_counter(), outcome
        usage_rows.write(job.served)

    def _end(self, job: Job, item: Ended | Failed) -> None:
        """Mark the job done before its client hears so, so that its closing `cancel()` is a
        no-op rather than a cancellation."""
        with self._lock:
            if job.state == RUNNING:
                job.state = DONE
        job.put(item)

    def _stop_sequence(self, options: GenerationOptions, visible: str, finish: str | None) -> str | None:
        """Which stop string ended the answer: none when it ended on EOS or on length."""
        generated = self._cache.generated_ids
        if finish != "stop" or not options.stop or not generated or generated[-1] in self.model.eos_ids():
            return None
        full = self.model.tokenizer.decode(generated)
        rest = full[len(visible):] if full.startswith(visible) else full
        found = [(rest.find(stop), stop) for stop in options.stop if stop in rest]
        return min(found)[1] if found else options.stop[0]


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    folder: Any  # core.models.model_folder.ModelFolder
    aliases: tuple[str, ...] = ()  # other names a request may use (the alias `serve` was given)
    adapters: tuple[tuple[str, Any], ...] = ()  # LoRA adapters (name, file): served as BASE:NAME

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model_id, *self.aliases)


class ModelNotServedError(LookupError):
    """A request named a model this server does not serve (the API's 404, never another model)."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        super().__init__(f"The model {name!r} is not served here; served: {', '.join(served)}.")
        self.name = name


class ModelPool:
    """The models `serve` was started with: loaded in the background, so `/health` can say 503
    while they load. A request without a model name goes to the first model; one that names a
    model not served here is refused (ModelNotServedError)."""

    def __init__(self, specs: Sequence[ModelSpec], execution_provider: str = "auto",
                 threads: int | None = None, max_queue: int = 16) -> None:
        self.specs = list(specs)
        self.execution_provider = execution_provider
        self.threads = threads
        self.max_queue = max_queue
        self.workers: dict[str, ModelWorker] = {}
        self.error: AgenticError | None = None
        self.warnings: list[str] = []
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.error is None

    def load(self) -> None:
        """Load every model (blocking; `serve` runs it on a thread)."""
        from agentic_onnx.core.generation.engine import load_model

        try:
            for spec in self.specs:
                loaded = load_model(spec.folder, self.execution_provider, self.threads)
                self.warnings.extend(loaded.warnings)
                self.workers[spec.model_id] = ModelWorker(spec.model_id, loaded, self.max_queue)
        except AgenticError as error:
            self.error = error
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def spec_for(self, name: str | None) -> ModelSpec:
        """The served model that `name` names (its id or an alias); the first for no name."""
        if not name:
            return self.specs[0]
        base, _, adapter = name.partition(":")
        for spec in self.specs:
            if name in spec.names or (adapter and base in spec.names
                                      and adapter in dict(spec.adapters)):
                return spec
        raise ModelNotServedError(name, self.served_ids())

    def served_ids(self) -> list[str]:
        """What /v1/models lists: each model, then each of its adapters as BASE:ADAPTER."""
        return [served for spec in self.specs for served in
                (spec.model_id, *(f"{spec.model_id}:{name}" for name, _ in spec.adapters))]

    def adapter_for(self, name: str | None) -> Any:
        """The adapter file a request's model name selects (BASE:ADAPTER), else None."""
        spec = self.spec_for(name)
        if not name or name in spec.names:
            return None
        return dict(spec.adapters)[name.partition(":")[2]]

    def served_name(self, name: str | None) -> str:
        """The id an answer reports: the model's, with `:ADAPTER` when one was chosen."""
        spec = self.spec_for(name)
        adapter = name.partition(":")[2] if name and self.adapter_for(name) is not None else ""
        return f"{spec.model_id}:{adapter}" if adapter else spec.model_id

    def worker_for(self, name: str | None) -> ModelWorker:
        return self.workers[self.spec_for(name).model_id]

    def status(self) -> list[dict[str, Any]]:
        if not self.ready:
            return [{"id": spec.model_id} for spec in self.specs]
        return [worker.status() for worker in self.workers.values()]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
