"""The ASGI app: routes of both dialects over one `ModelPool`.

Models load on a thread once the server is up, so `/health` answers 503 until they are ready
(and says why if loading failed). `/health` needs no API key; everything else does when the
server was started with one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentic_onnx.server import anthropic_api, openai_api
from agentic_onnx.server.pool import ModelPool


async def health(request: Request) -> Response:
    pool: ModelPool = request.app.state.pool
    if pool.error is not None:
        return JSONResponse({"status": "error", "error": pool.error.one_line()}, status_code=503)
    if not pool.ready:
        return JSONResponse({"status": "loading", "models": pool.status()}, status_code=503,
                            headers={"Retry-After": "1"})
    return JSONResponse({"status": "ok", "models": pool.status()})


def create_app(pool: ModelPool, api_key: str | None = None,
               on_loaded: Callable[[ModelPool], None] | None = None) -> Starlette:
    """The app; `on_loaded` runs on the loading thread once every model is loaded (or failed)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        def load() -> None:
            pool.load()
            if on_loaded is not None:
                on_loaded(pool)

        threading.Thread(target=load, name="model-loader", daemon=True).start()
        try:
            yield
        finally:
            pool.close()

    app = Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", openai_api.models, methods=["GET"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/messages", anthropic_api.messages, methods=["POST"]),
    ], lifespan=lifespan)
    app.state.pool = pool
    app.state.api_key = api_key
    return app


def server_config(app: Any, host: str, port: int) -> Any:
    """uvicorn's config: the access log names method, path and status, never a body."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True,
                          timeout_graceful_shutdown=5, lifespan="on")
