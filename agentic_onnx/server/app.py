"""The ASGI app: routes of both dialects over one `ModelPool`.

Models load on a thread once the server is up, so `/health` answers 503 until they are ready
(and says why if loading failed). `/health` needs no API key; everything else does when the
server was started with one, and without the key `/health` says only whether the server is up.
`/metrics` (Prometheus text, server.metrics) exists only with `serve --metrics`.
Every route is behind server.guard (Host, Origin, content type, body cap).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentic_onnx.server import anthropic_api, embeddings_api, openai_api, service_api
from agentic_onnx.server.guard import GuardConfig, RequestGuard
from agentic_onnx.server.http import ApiError, check_api_key, error_response, key_is_valid
from agentic_onnx.server.pool import ModelPool


async def health(request: Request) -> Response:
    """Up, loading or failed; the models and their queues only for a client that may use them
    (any client when the server has no key)."""
    pool: ModelPool = request.app.state.pool
    detailed = key_is_valid(request, request.app.state.api_key)
    if pool.error is not None:
        body = {"status": "error", "error": pool.error.one_line()} if detailed else {"status": "error"}
        return JSONResponse(body, status_code=503)
    if not pool.ready:
        body = {"status": "loading", "models": pool.status()} if detailed else {"status": "loading"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    if not detailed:
        return JSONResponse({"status": "ok"})
    body: dict[str, Any] = {"status": "ok", "models": pool.status()}
    if request.app.state.route is not None:  # serve --route: the deployments' health
        from agentic_onnx.router import deployments

        body["deployments"] = deployments.DEPLOYMENTS.snapshot()
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    """The Prometheus text (server.metrics), for clients with the key when the server has one."""
    try:
        check_api_key(request, request.app.state.api_key, allow_x_api_key=True)
    except ApiError as error:
        return error_response(error, openai_api.error_body)
    body, content_type = request.app.state.pool.metrics.render()
    return Response(body, headers={"Content-Type": content_type})


def create_app(pool: ModelPool, api_key: str | None = None,
               on_loaded: Callable[[ModelPool], None] | None = None,
               guard: GuardConfig | None = None, embeddings: Any = None,
               metrics_on: bool = False, route_in_flight: int = 0,
               service_token: str | None = None) -> Starlette:
    """The app; `on_loaded` runs on the loading thread once every model is loaded (or failed);
    `guard`: the request checks (default: bound to loopback, no CORS, a 10 MiB body cap);
    `embeddings`: the served embedding models (server/embeddings_api.EmbeddingModels);
    `metrics_on`: serve `GET /metrics` (server.metrics; prometheus_client is imported only then);
    `route_in_flight` > 0: `serve --route` (server.routing), at most that many routed requests
    at once; `service_token`: `serve --service` (router/service.py): the token is a key too, and
    the service's own API (server.service_api) is served."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        def load() -> None:
            failed = embeddings.load() if embeddings is not None else None
            pool.load()
            if failed is not None and pool.error is None:
                pool.error = failed  # reported like a chat model's loading failure
            if on_loaded is not None:
                on_loaded(pool)

        threading.Thread(target=load, name="model-loader", daemon=True).start()
        try:
            yield
        finally:
            pool.close()
            if embeddings is not None:
                embeddings.close()

    embeddings_only = not pool.specs and embeddings is not None and service_token is None
    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", openai_api.models, methods=["GET"]),
        Route("/v1/chat/completions", embeddings_api.no_chat_model if embeddings_only
              else openai_api.chat_completions, methods=["POST"]),
        Route("/v1/messages", embeddings_api.no_chat_model if embeddings_only
              else anthropic_api.messages, methods=["POST"]),
        Route("/v1/embeddings", embeddings_api.embeddings, methods=["POST"]),
        *([Route("/metrics", metrics, methods=["GET"])] if metrics_on else []),
        *([Route("/api/load", service_api.load, methods=["POST"]),
           Route("/api/ps", service_api.ps, methods=["GET"]),
           Route("/api/stop", service_api.stop, methods=["POST"])] if service_token else []),
    ], middleware=[Middleware(RequestGuard, config=guard or GuardConfig())], lifespan=lifespan)
    if metrics_on:
        from agentic_onnx.server.metrics import ServerMetrics

        pool.metrics = ServerMetrics(pool)
    app.state.pool = pool
    app.state.api_key = api_key if service_token is None else \
        tuple(key for key in (api_key, service_token) if key)
    app.state.service_token = service_token
    app.state.embeddings = embeddings
    app.state.route = None
    if route_in_flight > 0:
        from agentic_onnx.server.routing import RouteGate

        app.state.route = RouteGate(route_in_flight)
    return app


def server_config(app: Any, host: str, port: int) -> Any:
    """uvicorn's config: the access log names method, path and status, never a body."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True,
                          timeout_graceful_shutdown=5, lifespan="on")
