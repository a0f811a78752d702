"""`serve --route`: a request for a model this server does not serve goes through the router,
with the same rules, privacy guarantee, fallback chain, retries, answer check and usage log as
`run` (router/execute.py route_and_stream), instead of a 404.

The routing facts come from the config and from the request's headers:

    x-agentic-privacy: high | normal    x-agentic-local-only: true | false
    x-agentic-agent: NAME               x-agentic-complexity: low | medium | high
    x-agentic-provider: NAME            (a provider of the config, as `run --provider`)

The model name `auto` lets the router choose the model too. A private request (the header, or the config's `privacy: high` / `localOnly`, or a rule) is
answered only by local candidates, and a local candidate here is one of this server's own
workers (`PoolProvider`): the router never loads another model into the server, and never sends
a private request anywhere else. Answers say who answered: `x-agentic-provider` and
`x-agentic-model` headers (and `x-agentic-deployment`, the endpoint, when the provider lists
deployments: router/deployments.py), and the body's `model`.

Each routed request runs the router on a thread of its own (the providers' HTTP clients are
synchronous), bounded like a model's queue: more in flight than `max_in_flight` is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from agentic_onnx.core.errors import AgenticError, GenerationError, UsageError
from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.router.providers.base import Provider

log = logging.getLogger("uvicorn.error")

HEADERS = {"x-agentic-privacy": ("privacy", ("high", "normal")),
           "x-agentic-local-only": ("local_only", ("true", "false", "1", "0")),
           "x-agentic-agent": ("agent", None),
           "x-agentic-complexity": ("complexity", ("low", "medium", "high")),
           "x-agentic-provider": ("provider", None)}


def route_flags(headers: Any, model: str | None) -> Any:
    """The request's routing facts (router.rules.RouteFlags); a bad header value is a 400."""
    from agentic_onnx.router.rules import RouteFlags

    facts: dict[str, Any] = {}
    for header, (field, allowed) in HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        value = value.strip()
        if allowed is not None and value.lower() not in allowed:
            raise UsageError(f"Header {header}: expected one of {', '.join(allowed)}, "
                             f"not {value[:40]!r}.")
        facts[field] = value.lower() in ("true", "1") if field == "local_only" else value
    return RouteFlags(model=None if model in (None, "", "auto") else model, **facts)


def start(request: Any, chat: ChatRequest, front_end: str, tenant: str) -> RoutedJob:
    """Route `chat` (HTTP request `request`, whose headers carry the routing facts)."""
    state = request.app.state
    return RoutedJob(chat, route_flags(request.headers, chat.model), state.pool, state.route,
                     front_end, tenant, metrics=state.pool.metrics)


class PoolProvider(Provider):
    """A local candidate of a routed request, answered by this server's worker for the model
    (its queue, its KV cache for the request's tenant). The usage row is the router's."""

    supports_tools = True

    def __init__(self, name: str, pool: Any, tenant: str) -> None:
        super().__init__(name, local=True)
        self._pool = pool
        self._tenant = tenant
        self.model_name: str | None = None

    def prepare(self, request: ChatRequest) -> None:
        """Only a model this server serves (else ModelNotServedError: the next candidate)."""
        spec = self._pool.spec_for(request.model)
        self.model_name = self._pool.served_name(request.model)
        self.execution_provider = self._pool.workers[spec.model_id].model.execution_provider

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.prepare(request)
        from dataclasses import replace

        items: queue.Queue[Any] = queue.Queue()
        served = replace(request, adapter=request.adapter or self._pool.adapter_for(request.model))
        job = self._pool.worker_for(request.model).submit(
            served, tenant=self._tenant, model_name=self.model_name, log=False,
            deliver=items.put)
        try:
            while True:
                item = items.get()
                if isinstance(item, AgenticError):
                    raise item
                if isinstance(item, Response):
                    return
                yield item
        finally:
            job.cancel()


class RouteGate:
    """How many routed requests may be in flight at once (the rest: 503, Retry-After 1)."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._in_flight = 0

    def enter(self) -> None:
        from agentic_onnx.server.worker import QueueFullError

        with self._lock:
            if self._in_flight >= self.max_in_flight:
                raise QueueFullError(1)
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


class RoutedJob:
    """A routed request: the router on a thread, its events, then the finished Response (its
    answer checked), or the AgenticError it ended in, on `next_item` as a pool Job's are."""

    def __init__(self, request: ChatRequest, flags: Any, pool: Any, gate: RouteGate,
                 front_end: str, tenant: str, metrics: Any = None) -> None:
        self.request = request
        self.front_end = front_end
        self.answer_error: AgenticError | None = None
        self.metrics = metrics
        self._flags, self._pool, self._gate, self._tenant = flags, pool, gate, tenant
        self.queued_at = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._response: Response | None = None
        self._routed: Any = None  # router.execute.RoutedRun, once routed
        self.cached = False  # answered from the response cache
        gate.enter()
        threading.Thread(target=self._run, name="routed-request", daemon=True).start()

    @property
    def provider(self) -> str:
        return self._response.provider if self._response is not None else ""

    @property
    def model_name(self) -> str:
        if self._response is not None and self._response.model:
            return self._response.model
        return self.request.model or ""

    @property
    def deployment(self) -> str | None:
        """The endpoint that answered, when the provider balances deployments."""
        return self._routed.deployment if self._routed is not None else None

    async def next_item(self) -> Any:
        return await self._items.get()

    def cancel(self) -> None:
        self._cancelled.set()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the server is stopping
            self._cancelled.set()

    def _run(self) -> None:
        try:
            response = self._route()
            if response is None:  # the client went away
                self._count("interrupted")
                return
            self._count("invalid" if self.answer_error is not None else "ok")
            self._put(response)
        except AgenticError as error:
            self._count("error")
            self._put(error)
        except Exception as error:  # noqa: BLE001 - the client hears why; the server lives on
            log.exception("A routed request failed")
            self._put(GenerationError(f"Routing failed: {error}"))
        finally:
            self._gate.leave()

    def _count(self, outcome: str) -> None:
        """The request in `/metrics` (its usage row is the router's)."""
        if self.metrics is not None and self._response is not None:
            self.metrics.request_done(self, self._response, outcome)

    def _route(self) -> Response | None:
        """Stream the routed request's events to the client; return its finished Response."""
        from agentic_onnx.core.answers.structured import StructuredOutputError
        from agentic_onnx.router.execute import route_and_stream

        routed = route_and_stream(
            self.request, self._flags, command=self.front_end, on_notice=log.warning,
            local_provider=lambda name: PoolProvider(name, self._pool, self._tenant))
        response = self._response = routed.response
        self.cached = routed.cached
        self._routed = routed
        assert response is not None
        events = iter(response)
        try:
            for event in events:
                if self._cancelled.is_set():
                    return None
                self._put(event)
        except StructuredOutputError as error:  # the answer is complete, and not as asked
            self.answer_error = error
        finally:
            events.close()  # type: ignore[attr-defined]
        return response
