"""`agentic-onnx serve`: the OpenAI- and Anthropic-compatible local server.

Thin: resolve the models (fast, local files only, so a typo fails before the port opens), hand
them to `agentic_onnx.server`, run uvicorn. Starlette and uvicorn are imported here, inside the
command, never by `--help`.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Annotated, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, ExecutionProviderOpt, ThreadsOpt

DEFAULT_PORT = 8080
DEFAULT_MAX_QUEUE = 16


def serve_command(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Address to listen on. Anything but loopback exposes the models to the network: use --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = DEFAULT_PORT,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", metavar="MODEL", help="A model to serve (repeatable): catalog id, alias, custom name or folder. The first answers requests for model names it does not know. Default: the recommended model.")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", metavar="KEY", envvar="AGENTIC_ONNX_API_KEY", help="Require this key: `Authorization: Bearer KEY` (or `x-api-key: KEY` on /v1/messages). Also read from AGENTIC_ONNX_API_KEY.")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", metavar="N", help="Requests that may wait per model while one is generated; one more gets 503 with Retry-After.")] = DEFAULT_MAX_QUEUE,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve local models over the OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) APIs."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.errors import UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"Invalid value for --port: {port} is not between 0 and 65535.")
    if not 0 <= max_queue <= 10_000:
        raise UsageError(f"Invalid value for --max-queue: {max_queue} is not between 0 and 10000.")
    if api_key is not None and not api_key.strip():
        raise UsageError("The --api-key is empty.", "Pass a non-empty key, or leave --api-key out.")
    if not _is_loopback(host) and api_key is None:
        render.warning(f"Listening on {host} without --api-key: anyone who can reach this "
                       "machine can use the models.")
    specs = _resolve_models(model or [None])
    _run_server(specs, host, port, api_key, max_queue, execution_provider, threads)


def _resolve_models(names: list[Optional[str]]) -> list:  # noqa: ANN401
    from agentic_onnx.cli import render
    from agentic_onnx.core.resolve import resolve
    from agentic_onnx.server.pool import ModelSpec

    specs: dict[str, ModelSpec] = {}
    for name in names:
        resolution = resolve(name)
        if resolution.note:
            render.note(resolution.note)
        model_id = resolution.model_id or resolution.folder.name
        specs.setdefault(model_id, ModelSpec(model_id, resolution.folder))
    return list(specs.values())


def _run_server(specs: list, host: str, port: int, api_key: Optional[str], max_queue: int,
                execution_provider: str, threads: Optional[int]) -> None:
    import uvicorn

    from agentic_onnx.cli import render
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.server.app import create_app, server_config
    from agentic_onnx.server.pool import ModelPool

    pool = ModelPool(specs, execution_provider, threads, max_queue)

    def on_loaded(loaded: ModelPool) -> None:
        for message in loaded.warnings:
            render.warning(message)
        if loaded.error is not None:
            server.should_exit = True  # the error is reported once uvicorn has stopped
            return
        for _ in range(600):  # the models may load before the port is open: wait (60 s at most)
            if server.started or server.should_exit:
                break
            time.sleep(0.1)
        if server.started:
            names = ", ".join(spec.model_id for spec in specs)
            render.note(f"Ready: {names} on http://{_url_host(host)}:{_bound_port(server, port)} "
                        "(OpenAI: /v1/chat/completions, Anthropic: /v1/messages).")

    server = uvicorn.Server(server_config(create_app(pool, api_key, on_loaded), host, port))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        raise UsageError(f"Could not listen on {host}:{port}.",
                         "Is another server using the port? Pick another --port.") from None
    if pool.error is not None:
        raise pool.error


def _bound_port(server, default: int) -> int:  # noqa: ANN001
    """The port uvicorn listens on (what `--port 0` picked)."""
    try:
        return int(server.servers[0].sockets[0].getsockname()[1])
    except (AttributeError, IndexError, OSError):
        return default


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
