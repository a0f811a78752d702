"""The service's own API (`serve --service`), for `agentic-onnx ps|stop` and the CLI's
ServiceProvider; every route needs the service's token (not another --api-key).

    POST /api/load  {"model": NAME_OR_PATH, "adapter": NAME|null, "keep_alive": DURATION}
                    -> {"model", "execution_provider", "load_s", "warnings"}   (load_s 0: resident)
    GET  /api/ps    -> {"models": [{"id", "execution_provider", "memory_bytes", "running",
                                    "waiting", "keep_alive_s", "unloads_in_s", ...}]}
    POST /api/stop  {"model": ID} -> {"model": ID, "unloaded": true}
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.server.http import ApiError, api_error, check_api_key, error_response, parse_body
from agentic_onnx.server.openai_api import error_body


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Optional[str] = None
    adapter: Optional[str] = None
    keep_alive: Union[str, float, int, None] = None


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str


async def load(request: Request) -> Response:
    pool = request.app.state.pool
    try:
        _check_token(request)
        body: LoadRequest = await parse_body(request, LoadRequest)
        keep = _keep_alive(body.keep_alive)
        loaded = await run_in_threadpool(pool.ensure_loaded, body.model, keep)
        if body.adapter:  # found (and checked once) before any request uses it
            worker = pool.workers.get(loaded["model"])
            if worker is not None:
                await run_in_threadpool(worker.local.adapter_file, body.adapter)
    except ApiError as error:
        return error_response(error, error_body)
    except AgenticError as error:
        return error_response(api_error(error), error_body)
    return JSONResponse(loaded)


async def ps(request: Request) -> Response:
    try:
        _check_token(request)
    except ApiError as error:
        return error_response(error, error_body)
    return JSONResponse({"models": request.app.state.pool.resident()})


async def stop(request: Request) -> Response:
    pool = request.app.state.pool
    try:
        _check_token(request)
        body: StopRequest = await parse_body(request, StopRequest)
        unloaded = await run_in_threadpool(pool.unload, body.model)
    except ApiError as error:
        return error_response(error, error_body)
    except AgenticError as error:
        return error_response(api_error(error), error_body)
    return JSONResponse({"model": unloaded, "unloaded": True})


def _check_token(request: Request) -> None:
    """The service's own API answers only a client holding its token (not another --api-key):
    it loads folders by path and unloads models."""
    check_api_key(request, request.app.state.service_token, allow_x_api_key=True)


def _keep_alive(value: Any) -> Any:  # noqa: ANN401
    """The request's keep_alive (server.residency), or "default" when it set none."""
    if value is None:
        return "default"
    from agentic_onnx.server.residency import parse_keep_alive

    return parse_keep_alive(value)
