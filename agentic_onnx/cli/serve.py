"""`agentic-onnx serve`: the OpenAI- and Anthropic-compatible local server.

Thin: resolve the models (fast, local files only, so a typo fails before the port opens), hand
them to `agentic_onnx.server`, run uvicorn. Starlette and uvicorn are imported here, inside the
command, never by `--help`.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import DeviceIdsOpt, ExecutionProviderOpt, ThreadsOpt, complete_model

DEFAULT_PORT = 8080
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_BODY_MB = 10.0  # agentic_onnx.server.guard's default, kept here so --help imports no server
DEFAULT_KV_CACHE_SLOTS = 4  # core.generation.kv_budget.DEFAULT_KV_SLOTS, kept here for the same reason


def serve_command(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Address to listen on. Anything but loopback exposes the models to the network: use --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = DEFAULT_PORT,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", metavar="MODEL", autocompletion=complete_model, help="A model to serve (repeatable): catalog id, alias, custom name or folder. Requests name it by its id (`/v1/models` lists them); another name gets 404. Default: the recommended model.")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", metavar="KEY", envvar="AGENTIC_ONNX_API_KEY", help="Require this key: `Authorization: Bearer KEY` (or `x-api-key: KEY` on /v1/messages). Also read from AGENTIC_ONNX_API_KEY.")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", metavar="N", help="Requests that may wait per model (per GPU copy with several --device-id) while one is generated; one more gets 503 with Retry-After.")] = DEFAULT_MAX_QUEUE,
    allowed_host: Annotated[Optional[list[str]], typer.Option("--allowed-host", metavar="NAME", help="Also answer requests whose Host header is NAME (repeatable; '*' for any). Loopback names and the --host address always work; any other Host gets 403 (DNS-rebinding defence).")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option("--cors-origin", metavar="ORIGIN", help="Let web pages at ORIGIN (e.g. http://localhost:3000) call the server from a browser (repeatable; '*' for any). Requests from other origins get 403.")] = None,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", metavar="MB", help="Largest request body in MiB; a larger one gets 413 before it is read.")] = DEFAULT_MAX_BODY_MB,
    kv_cache_slots: Annotated[int, typer.Option("--kv-cache-slots", metavar="N", help="Conversations whose KV cache each model keeps between requests (a request continuing one computes only its new tokens); the least recently used is evicted. 1: one cache per model.")] = DEFAULT_KV_CACHE_SLOTS,
    kv_cache_mb: Annotated[Optional[float], typer.Option("--kv-cache-mb", metavar="MB", help="Memory the kept KV caches of each model may use, in MiB (fewer slots are kept when they do not fit; one always is). Default: half the memory available once the models are loaded, shared by the models.")] = None,
    route: Annotated[bool, typer.Option("--route", help="Send requests for models not served here through the router (the config's rules, privacy guarantee, fallback and usage log; x-agentic-* headers carry routing facts: docs/serving.md) instead of answering 404. Off the loopback address it needs --api-key.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="Serve GET /metrics: request counts, tokens, TTFT, decode speed and queues in the Prometheus text format (needs the --api-key when there is one).")] = False,
    service: Annotated[bool, typer.Option("--service", help="Run as this user's resident service (what `agentic-onnx service start` runs in the background): loopback only, registered in the home's service.json with a token that clients must send; `run`, `chat` and `onnx test` use it; models load when first asked for and unload after --keep-alive.")] = False,
    keep_alive: Annotated[Optional[str], typer.Option("--keep-alive", metavar="DURATION", help="How long a model stays loaded after its last request: 5m, 30s, 1h, 0 (unload at once), -1 (forever). Default: 5m with --service, else forever.")] = None,
    max_memory_gb: Annotated[Optional[float], typer.Option("--max-memory-gb", metavar="GB", help="With --service: memory the loaded models' weights may take; the least recently used idle model is unloaded to make room. Default: 80% of the memory available at start.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", help="Waiting plain requests (no tools, schema or images; greedy or the same sampling) to one model that decode together in one batch: more tokens/s in all; greedy answers match the lone ones but for near-ties (docs/serving.md). 1: one at a time. Default: 4 on the CPU, 1 on a GPU (not measured there yet).")] = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    device_id: DeviceIdsOpt = None,
) -> None:
    """Serve local models over the OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) APIs."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.provider_kinds import is_loopback_host

    if not 0 <= port <= 65535:
        raise UsageError(f"Invalid value for --port: {port} is not between 0 and 65535.")
    if not 0 <= max_queue <= 10_000:
        raise UsageError(f"Invalid value for --max-queue: {max_queue} is not between 0 and 10000.")
    if not 0 < max_body_mb <= 4096:
        raise UsageError(f"Invalid value for --max-body-mb: {max_body_mb:g} is not above 0 and at most 4096.")
    if not 1 <= kv_cache_slots <= 256:
        raise UsageError(f"Invalid value for --kv-cache-slots: {kv_cache_slots} is not between 1 and 256.")
    if batch_size is not None and not 1 <= batch_size <= 64:
        raise UsageError(f"Invalid value for --batch-size: {batch_size} is not between 1 and 64.")
    if kv_cache_mb is not None and not kv_cache_mb > 0:
        raise UsageError(f"Invalid value for --kv-cache-mb: {kv_cache_mb:g} is not above 0.")
    if api_key is not None and not api_key.strip():
        raise UsageError("The --api-key is empty.", "Pass a non-empty key, or leave --api-key out.")
    if route and not is_loopback_host(host) and api_key is None:
        raise UsageError(f"--route on {host} without --api-key would let anyone who can reach "
                         "this machine spend your cloud providers' keys.",
                         "Add --api-key KEY, or listen on 127.0.0.1.")
    if service and not is_loopback_host(host):
        raise UsageError("The service listens on loopback only.", "Drop --host, or use 127.0.0.1.")
    if service:
        from agentic_onnx.router.service import discover

        running = discover()
        if running is not None:
            raise UsageError(f"A service is already running at {running.url} (pid {running.pid}).",
                             "Stop it first: `agentic-onnx service stop`.")
    if max_memory_gb is not None and not max_memory_gb > 0:
        raise UsageError(f"Invalid value for --max-memory-gb: {max_memory_gb:g} is not above 0.")
    from agentic_onnx.server.residency import parse_keep_alive

    residency = {"keep_alive_s": parse_keep_alive(keep_alive or ("5m" if service else "-1")),
                 "memory_budget_bytes": _memory_budget(max_memory_gb) if service else None,
                 "on_demand": service}
    if not is_loopback_host(host) and api_key is None:
        output.current().warning(f"Listening on {host} without --api-key: anyone who can "
                                 "reach this machine can use the models.")
    device_ids = parse_device_ids(device_id or [])
    from agentic_onnx.router.local_settings import local_settings

    # The config's local EP and threads, as `run` and `chat` load with (-e/--threads win).
    settings = local_settings(execution_provider, threads, on_notice=output.current().warning)
    chat_names, embeddings = _split_embedding_models(model or [], settings.execution_provider,
                                                     settings.threads, max_queue)
    specs = _resolve_models(chat_names or ([] if embeddings or service else [None]))
    guard = _guard_config(host, allowed_host or [], cors_origin or [], max_body_mb)
    _run_server(specs, host, port, api_key, max_queue, settings.execution_provider,
                settings.threads, guard, embeddings=embeddings, metrics=metrics, route=route,
                kv_cache=(kv_cache_slots, kv_cache_mb), residency=residency, service=service,
                device_ids=device_ids, batch_size=batch_size)


def parse_device_ids(values: list[str]) -> tuple[int, ...]:
    """`--device-id` values (repeated, or N,M; `all`: every NVIDIA GPU) as distinct GPU ids,
    in the order given; none: ()."""
    from agentic_onnx.core.errors import UsageError

    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if "all" in (part.lower() for part in parts):
        if len(parts) > 1:
            raise UsageError("--device-id all cannot be combined with other device ids.",
                             "Pass `all`, or list the GPUs: --device-id 0 --device-id 1.")
        from agentic_onnx.core.machine.hardware import cuda_device_ids

        found = cuda_device_ids()
        if not found:
            raise UsageError("--device-id all found no NVIDIA GPU.",
                             "`agentic-onnx onnx info` shows what this machine has.")
        return tuple(found)
    bad = next((part for part in parts if not (part.isascii() and part.isdigit())), None)
    if bad is not None:
        raise UsageError(f"Invalid value for --device-id: {bad!r} is not a GPU number or `all`.",
                         "GPUs are numbered from 0 (`agentic-onnx onnx info` lists them).")
    ids = tuple(int(part) for part in parts)
    if len(set(ids)) != len(ids):
        raise UsageError("A --device-id is given twice.", "List each GPU once.")
    return ids


def _memory_budget(max_memory_gb: Optional[float]) -> int:
    """The service's budget for loaded weights: the option, else 80% of what is available."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    import psutil

    return int(psutil.virtual_memory().available * 0.8)


def _split_embedding_models(names: list[str], execution_provider: str, threads: Optional[int],
                            max_queue: int):  # noqa: ANN202 - (chat names, EmbeddingModels | None)
    """Embedding models among the `--model`s go to /v1/embeddings (docs/embeddings.md); the
    rest are chat models. Only embedding models: the server serves embeddings only."""
    from agentic_onnx.core.embeddings.resolve import embedding_kind, resolve_embedding

    chat = [name for name in names if embedding_kind(name) != "embedding"]
    wanted = [name for name in names if embedding_kind(name) == "embedding"]
    if not wanted:
        return chat, None
    from agentic_onnx.core.embeddings.batcher import EmbeddingBatcher
    from agentic_onnx.server.embeddings_api import EmbeddingModels

    folders = {folder.model_id: folder for folder in map(resolve_embedding, wanted)}
    return chat, EmbeddingModels([EmbeddingBatcher(folder, execution_provider, threads, max_queue)
                                  for folder in folders.values()])


def _guard_config(host: str, allowed_hosts: list[str], cors_origins: list[str],
                  max_body_mb: float):  # noqa: ANN202 - server.guard.GuardConfig, imported late
    from agentic_onnx.server.guard import MIB, GuardConfig

    return GuardConfig(bind_host=host, allowed_hosts=tuple(allowed_hosts),
                       cors_origins=tuple(cors_origins), max_body_bytes=int(max_body_mb * MIB))


def _resolve_models(names: list[Optional[str]]) -> list:  # noqa: ANN401
    from agentic_onnx.core.models.resolve import resolve
    from agentic_onnx.server.pool import ModelSpec, installed_adapters_of, served_names

    specs: dict[str, ModelSpec] = {}
    for name in names:
        resolution = resolve(name)
        if resolution.note:
            output.current().note(resolution.note)
        model_id, aliases = served_names(name, resolution)  # server/pool.py's rule
        known = specs.get(model_id)
        aliases = tuple(dict.fromkeys((*(known.aliases if known else ()), *aliases)))
        # LoRA adapters beside a model are served as BASE:ADAPTER, loaded on first use into
        # the base's own og.Model (each costs its tensors, not another base).
        specs[model_id] = ModelSpec(model_id, resolution.folder, aliases,
                                    adapters=installed_adapters_of(resolution.folder))
    return list(specs.values())


def _run_server(specs: list, host: str, port: int, api_key: Optional[str], max_queue: int,
                execution_provider: str, threads: Optional[int], guard,  # noqa: ANN001
                embeddings=None, metrics: bool = False, route: bool = False,  # noqa: ANN001
                kv_cache: tuple[int, Optional[float]] = (DEFAULT_KV_CACHE_SLOTS, None),
                residency: Optional[dict] = None, service: bool = False,
                device_ids: tuple[int, ...] = (), batch_size: Optional[int] = None) -> None:
    import uvicorn

    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.server.app import create_app, server_config
    from agentic_onnx.server.pool import ModelPool

    from agentic_onnx.router import service as registry

    pool = ModelPool(specs, execution_provider, threads, max_queue, *kv_cache, **(residency or {}),
                     device_ids=device_ids, batch_size=batch_size)
    token = registry.new_token() if service else None
    registered: list = []

    def on_loaded(loaded: ModelPool) -> None:
        for message in loaded.warnings:
            output.current().warning(message)
        if loaded.error is not None:
            server.should_exit = True  # the error is reported once uvicorn has stopped
            return
        for _ in range(600):  # the models may load before the port is open: wait (60 s at most)
            if server.started or server.should_exit:
                break
            time.sleep(0.1)
        if server.started:
            url = f"http://{_url_host(host)}:{_bound_port(server, port)}"
            if token is not None:  # clients find it from now on
                registered.append(registry.register(url, token))
            served = [spec.model_id for spec in specs] + (embeddings.ids if embeddings else [])
            names = ", ".join(served) or ("models on demand" if service else "")
            output.current().note(
                f"Ready: {names} on {url} "
                "(OpenAI: /v1/chat/completions, Anthropic: /v1/messages).")

    app = create_app(pool, api_key, on_loaded, guard, embeddings=embeddings, metrics_on=metrics,
                     route_in_flight=max(1, max_queue) if route else 0, service_token=token)
    server = uvicorn.Server(server_config(app, host, port))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        raise UsageError(f"Could not listen on {host}:{port}.",
                         "Is another server using the port? Pick another --port.") from None
    finally:
        for state in registered:
            registry.unregister(state)
    if pool.error is not None:
        raise pool.error


def _bound_port(server, default: int) -> int:  # noqa: ANN001
    """The port uvicorn listens on (what `--port 0` picked)."""
    try:
        return int(server.servers[0].sockets[0].getsockname()[1])
    except (AttributeError, IndexError, OSError):
        return default


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
