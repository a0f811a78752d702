"""What both API dialects share: errors, API keys, request bodies, and streams that stop when
the client goes away. Request bodies are never logged."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.server.worker import Job, ModelNotServedError, QueueFullError

MAX_JSON_DEPTH = 100  # tool schemas nest a few levels; nothing a client means nests 100

ErrorBody = Callable[..., dict[str, Any]]  # (status, kind, message, param[, code]) -> JSON body


class ApiError(Exception):
    """An error the client gets as JSON: HTTP status, error type, message, the bad field."""

    def __init__(self, status: int, kind: str, message: str, param: str | None = None,
                 retry_after_s: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.param = status, kind, message, param
        self.retry_after_s, self.code = retry_after_s, code


KINDS = {400: "invalid_request_error", 402: "billing_error", 403: "permission_error",
         404: "not_found_error", 422: "invalid_request_error", 503: "overloaded_error"}


def api_error(error: AgenticError) -> ApiError:
    """An AgenticError as the client hears it: its own HTTP status (core.errors), its one line."""
    retry_after = getattr(error, "retry_after_s", None)
    return ApiError(error.http_status, KINDS.get(error.http_status, "api_error"),
                    error.one_line(), retry_after_s=int(retry_after) if retry_after else None,
                    code=error.api_code)


def error_response(error: ApiError, body: ErrorBody) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
    return JSONResponse(body(error.status, error.kind, error.message, error.param, error.code),
                        status_code=error.status, headers=headers)


def presented_key(request: Request, allow_x_api_key: bool = True) -> str:
    """The key the client sent: `Authorization: Bearer KEY`, or (Anthropic) `x-api-key: KEY`."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("x-api-key", "") if allow_x_api_key else ""


def key_is_valid(request: Request, api_key: str | tuple[str, ...] | None,
                 allow_x_api_key: bool = True) -> bool:
    """Whether the request presents the key (or one of the keys: `--api-key` and the
    service's token); any request does when the server has none."""
    if api_key is None:
        return True
    given = presented_key(request, allow_x_api_key)
    keys = (api_key,) if isinstance(api_key, str) else api_key
    return bool(given) and any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def check_api_key(request: Request, api_key: str | tuple[str, ...] | None,
                  allow_x_api_key: bool) -> None:
    """`Authorization: Bearer KEY` (and, for the Anthropic dialect, `x-api-key: KEY`)."""
    if not key_is_valid(request, api_key, allow_x_api_key):
        raise ApiError(401, "authentication_error", "Invalid or missing API key.")


def tenant(request: Request, api_key: str | tuple[str, ...] | None, *labels: str | None) -> str:
    """Who may share a model's KV cache (and hear how much of a prompt was cached): the key
    presented, when the server has one, plus the client's own labels (`cache_salt`, `user`,
    Anthropic's `metadata.user_id`). Requests of different tenants never reuse each other's
    prefix. A digest, so that no key is kept beside the cache."""
    key = presented_key(request) if api_key is not None else ""
    parts = [key, *(label or "" for label in labels)]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


async def parse_body(request: Request, schema: type[BaseModel]) -> Any:
    """The JSON body validated by `schema`; any problem is a 400 that names the field. Parsing
    and validation run on a worker thread: a large body must not stall the event loop (and with
    it `/health` and every stream). The body is already capped by server.guard."""
    raw = await request.body()
    return await run_in_threadpool(decode_body, raw, schema)


def decode_body(raw: bytes, schema: type[BaseModel]) -> Any:
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise _too_deep() from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_request_error", "The request body is not valid JSON.") from None
    except ValueError:  # Python's limit on int-string conversion (4300 digits)
        raise ApiError(400, "invalid_request_error",
                       "The request body holds a number with too many digits.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request_error", "The request body must be a JSON object.")
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise _too_deep()
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, "invalid_request_error", f"{where}: {first['msg']}",
                       param=where or None) from None


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether JSON nests deeper than `limit` (walked without recursion). Every later step
    (validation, the chat template, the tool grammar) recurses, so the cap is set here once."""
    level: list[tuple[Any, int]] = [(data, 1)]
    while level:
        value, depth = level.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        level.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _too_deep() -> ApiError:
    return ApiError(400, "invalid_request_error",
                    f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")


async def load_if_needed(request: Request, model: str | None,
                         keep_alive: Any = None) -> Callable[[], None] | None:
    """The service (`serve --service`) loads a model a request names that is not loaded yet
    (an id, alias or `onnx add` name; a folder path only from a client holding the service's
    token). A name no local model has is left to the router (`--route`) or the 404. The
    request's `keep_alive` (Ollama's field: 5m, 0, -1) sets how long the model stays loaded.
    Returns the release of a pin (pool.pin) that keeps the model loaded until the request is
    queued: call it when the request is admitted (or refused)."""
    pool = request.app.state.pool
    if not getattr(pool, "on_demand", False):
        return None
    keep = "default"
    if keep_alive is not None:
        from agentic_onnx.server.residency import parse_keep_alive

        try:
            keep = parse_keep_alive(keep_alive)
        except AgenticError as error:
            raise ApiError(400, "invalid_request_error", error.one_line(),
                           param="keep_alive") from None
    if (model and pool.serves(model)) or (not model and pool.specs):
        release = pool.pin(model)
        if keep != "default":
            await run_in_threadpool(pool.ensure_loaded, model, keep)
        return release
    from agentic_onnx.core.errors import ModelNotFoundError
    from agentic_onnx.core.models.resolve import looks_like_path

    token = getattr(request.app.state, "service_token", None)
    if model and looks_like_path(model) and not (token and key_is_valid(request, token)):
        raise ApiError(403, "permission_error", "Only a client holding the service's token may "
                       "load a model from a path.", param="model")
    try:
        await run_in_threadpool(pool.ensure_loaded, model, keep)
    except ModelNotFoundError as error:
        if getattr(request.app.state, "route", None) is None:
            raise api_error(error) from None
        return None
    except AgenticError as error:
        raise api_error(error) from None
    return pool.pin(model)


def requested_adapter(request: Request, model: str | None, extra: dict[str, Any] | None) -> str | None:
    """The LoRA adapter a request asks for: `MODEL:ADAPTER`, or (our CLI through the service)
    an `adapter` field; an adapter file by path only from a client holding the service's token."""
    pool = request.app.state.pool
    if pool.serves(model) and pool.adapter_for(model):  # MODEL:ADAPTER, installed beside it
        return pool.adapter_for(model)
    adapter = (extra or {}).get("adapter")
    if adapter is None:
        return None
    if not isinstance(adapter, str) or not adapter:
        raise ApiError(400, "invalid_request_error", "adapter: expected a name.", param="adapter")
    from agentic_onnx.core.models.resolve import looks_like_path

    token = getattr(request.app.state, "service_token", None)
    if looks_like_path(adapter) and not (token and key_is_valid(request, token)):
        raise ApiError(403, "permission_error", "Only a client holding the service's token may "
                       "load an adapter from a path.", param="adapter")
    return adapter


def logged_by_client(request: Request) -> bool:
    """A request whose client writes its own usage row (`run` through the service): the
    service does not log it twice. Honoured only with a valid key."""
    return request.headers.get("x-agentic-logged") == "client"


def routes(request: Request, model: str | None) -> bool:
    """Whether the request goes through the router (`serve --route`, a model not served here)."""
    state = request.app.state
    return getattr(state, "route", None) is not None and not state.pool.serves(model)


def start_job(request: Request, chat: ChatRequest, front_end: str, tenant: str,
              routed: bool) -> Any:
    """The request's job: the model's worker, or (`routed`: a model not served here, `--route`)
    the router; the job's items are the same either way."""
    if routed:
        from agentic_onnx.server import routing

        try:
            return routing.start(request, chat, front_end, tenant)
        except AgenticError as error:
            raise api_error(error) from None
    return submit(request.app.state.pool, chat, front_end=front_end, tenant=tenant,
                  log=not logged_by_client(request))


async def admit(request: Request, body: Any, prepare: Callable[[bool, str | None], ChatRequest],
                front_end: str, tenant_id: str) -> tuple[Any, ChatRequest]:
    """Both dialects' way in, once the body is parsed: the model loaded when the service loads
    on demand (pinned until queued), routed (`--route`) or checked (a 404 for a name not served
    here), its adapter, the ChatRequest built by `prepare(routed, adapter)` on a worker thread
    (images decode, grammars compile), and its job queued."""
    model, extra = body.model, body.model_extra or {}
    release = await load_if_needed(request, model, extra.get("keep_alive"))
    try:
        routed = routes(request, model)
        if not routed:
            check_model(request.app.state.pool, model)
        adapter = None if routed else requested_adapter(request, model, extra)
        chat = await run_in_threadpool(prepare, routed, adapter)
        return start_job(request, chat, front_end, tenant_id, routed), chat
    finally:
        if release is not None:  # queued (or refused): keep-alive takes over from the pin
            release()


def check_model(pool: Any, model: str | None) -> None:
    """A model name this server does not serve is a 404 (never answered by another model)."""
    try:
        pool.spec_for(model)
    except ModelNotServedError as error:
        raise ApiError(404, "not_found_error", str(error), param="model") from None


def submit(pool: Any, request: ChatRequest, **job: Any) -> Job:
    """Queue the request on its model: 503 while loading or when the queue is full. `job`:
    tenant and front_end (see worker.Job)."""
    if not pool.ready:
        raise ApiError(503, "overloaded_error", "The model is still loading; retry shortly.",
                       retry_after_s=1)
    try:
        return pool.worker_for(request.model).submit(
            request, model_name=pool.served_name(request.model), metrics=pool.metrics, **job)
    except QueueFullError as error:
        if pool.metrics is not None:
            pool.metrics.queue_full(pool.served_name(request.model), job.get("front_end", ""))
        raise ApiError(503, "overloaded_error",
                       "The model's queue is full; retry after the time in Retry-After.",
                       retry_after_s=error.retry_after_s) from None
    except (KeyError, ModelNotServedError):
        if not getattr(pool, "on_demand", False):
            raise
        # The service unloaded it (keep-alive) between the check and now: a retry loads it.
        raise ApiError(503, "overloaded_error", "The model was just unloaded; retry.",
                       retry_after_s=1) from None


def decode_image(data: Any, label: str) -> Any:
    """Base64 image bytes from a request as a core.generation.vision.ImageInput; a 400 when they are not
    base64 or not a PNG, JPEG or BMP image."""
    import base64
    import binascii

    from agentic_onnx.core.generation.vision import ImageError, image_from_bytes

    try:
        raw = base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_request_error", f"{label}: the image data is not valid "
                       "base64.", param=label) from None
    try:
        return image_from_bytes(raw, label)
    except ImageError as error:
        raise ApiError(400, "invalid_request_error", f"{label}: {error.one_line()}",
                       param=label) from None


def remote_image_refused(label: str, inline: str) -> ApiError:
    """We never fetch from the network on a client's behalf: a URL image is the client's to send."""
    return ApiError(400, "invalid_request_error",
                    f"{label}: this server does not download images from URLs; send the image "
                    f"inline as {inline}.", param=label)


def check_vision(pool: Any, model: str | None, images: list[Any]) -> None:
    """Images for a text-only model are a 400 before the request is queued."""
    if not images or not pool.ready:
        return
    from agentic_onnx.core.generation.vision import VisionNotSupportedError, tag_style

    worker = pool.worker_for(model)
    try:
        tag_style(worker.model.folder)
    except VisionNotSupportedError as error:
        raise ApiError(400, "invalid_request_error",
                       f"{error.message} Serve a vision model for images, or send text only.",
                       param="messages") from None


async def job_items(job: Job) -> AsyncIterator[Any]:
    """The job's events, then its finished Response (the last item); a failure raises
    ApiError. Leaving early cancels the job."""
    try:
        while True:
            item = await job.next_item()
            if isinstance(item, AgenticError):
                raise api_error(item)
            yield item
            if isinstance(item, Response):
                return
    finally:
        job.cancel()


async def collect(job: Job, request: Request) -> Response:
    """The finished Response of a non-streamed request; a client that disconnects cancels it."""
    items: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, request, job, group.cancel_scope)
        async for item in job_items(job):
            items.append(item)
        group.cancel_scope.cancel()
    if not items or not isinstance(items[-1], Response):
        raise ApiError(499, "api_error", "The client closed the request.")
    return items[-1]


async def _cancel_on_disconnect(request: Request, job: Job, scope: anyio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel()
    scope.cancel()


async def first_item(job: Job, request: Request) -> Any:
    """Wait (watching for a disconnect) until the job leaves the queue and its stream starts:
    its first event (local models: FirstToken, with the prompt's token counts). A request that
    fails before it starts (a prompt too long) is an ApiError here, before any header is sent."""
    result: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, request, job, group.cancel_scope)
        result.append(await job.next_item())
        group.cancel_scope.cancel()
    if not result:
        job.cancel()
        raise ApiError(499, "api_error", "The client closed the request.")
    item = result[0]
    if isinstance(item, AgenticError):
        job.cancel()
        raise api_error(item)
    return item


async def rest_of(job: Job, first: Any) -> AsyncIterator[Any]:
    """The job's items from `first` (what first_item returned) to its finished Response."""
    yield first
    if isinstance(first, Response):
        job.cancel()
        return
    async for item in job_items(job):
        yield item


class EventStream(StreamingResponse):
    """Server-sent events that stop the job as soon as the client disconnects, whatever ASGI
    version the server speaks (Starlette watches only on writes for ASGI 2.4)."""

    def __init__(self, content: AsyncIterator[str], job: Job,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                  **(headers or {})})
        self._job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def stream_then_stop() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            self._job.cancel()


def answered_by(job: Any) -> dict[str, str]:
    """The headers that say who answered: the provider, the model, the deployment (a balanced
    provider's endpoint) and whether the answer came from the response cache."""
    headers = {"x-agentic-provider": job.provider, "x-agentic-model": job.model_name}
    if getattr(job, "deployment", None):
        headers["x-agentic-deployment"] = job.deployment
    if getattr(job, "cached", False):
        headers["x-agentic-cache"] = "hit"
    return headers


def finished(job: Any, reply: dict[str, Any], error_body: ErrorBody, key: str,
             param: str | None = None) -> JSONResponse:
    """A non-streamed answer: `reply`, or (its answer failed its check) the error with the reply
    kept beside it under `key`, so nothing generated is lost."""
    if job.answer_error is None:
        return JSONResponse(reply, headers=answered_by(job))
    error = api_error(job.answer_error)
    return JSONResponse({**error_body(error.status, error.kind, error.message, param), key: reply},
                        status_code=error.status, headers=answered_by(job))


def openai_tool_calls(response: Response) -> list[dict[str, Any]]:
    """The reply's calls in the OpenAI message shape."""
    return [{"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in response.tool_calls]


def sse(data: dict[str, Any], event: str | None = None) -> str:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data, ensure_ascii=False)}\n\n"
