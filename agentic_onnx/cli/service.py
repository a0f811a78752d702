"""`agentic-onnx service start|stop|status`, `ps` and `stop MODEL`: the resident service.

`service start` runs `agentic-onnx serve --service` in the background (its log under the home),
and waits until it answers; `run`, `chat`, `onnx test` and the router's local provider then send
their requests to it (router/service.py) instead of loading the model themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import (
    DeviceIdsOpt,
    ExecutionProviderOpt,
    JsonOpt,
    ThreadsOpt,
    complete_model,
)

service_app = typer.Typer(help="The resident service: models stay loaded between commands.",
                          no_args_is_help=True)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_NAME = "service.log"

KeepAliveOpt = Annotated[str, typer.Option("--keep-alive", metavar="DURATION", help="How long a model stays loaded after its last request: 5m, 30s, 1h, 0 (unload at once), -1 (until the service stops).")]
MaxMemoryOpt = Annotated[Optional[float], typer.Option("--max-memory-gb", metavar="GB", help="Memory the loaded models may take; the least recently used idle model is unloaded to make room. Default: 80% of the memory available when the service starts.")]


@service_app.command("start")
def start_command(
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port on 127.0.0.1 (0: a free one; `service status` tells which).")] = 0,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", metavar="MODEL", autocompletion=complete_model, help="A model to load at once (repeatable); others load when first asked for.")] = None,
    keep_alive: KeepAliveOpt = "5m",
    max_memory_gb: MaxMemoryOpt = None,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    device_id: DeviceIdsOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start the service in the background (loopback only), unless one is running."""
    from agentic_onnx.core.paths import home_dir
    from agentic_onnx.router.service import discover

    out = output.current()
    running = discover()
    if running is not None:
        out.result({**running.to_json(), "started": False},
                   f"The service is already running at {running.url} (pid {running.pid}).")
        return
    home_dir().mkdir(parents=True, exist_ok=True)
    log_path = home_dir() / LOG_NAME
    command = [sys.executable, "-m", "agentic_onnx", "serve", "--service", "--host", "127.0.0.1",
               "--port", str(port), "--keep-alive", keep_alive, "-e", execution_provider]
    command += [part for name in model or [] for part in ("--model", name)]
    command += ["--max-memory-gb", str(max_memory_gb)] if max_memory_gb is not None else []
    command += ["--threads", str(threads)] if threads is not None else []
    from agentic_onnx.cli.serve import parse_device_ids

    parse_device_ids(device_id or [])  # a bad value is exit 2 here, not a child that dies
    command += [part for value in device_id or [] for part in ("--device-id", value)]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    state = _wait_started(child, log_path)
    out.result({**state.to_json(), "started": True, "log": str(log_path)},
               f"The service is running at {state.url} (pid {state.pid}); log: {log_path}.")


def _wait_started(child: subprocess.Popen, log_path: Any) -> Any:  # noqa: ANN401
    """The service's state once it answers /health (polled while the child lives, bounded)."""
    from agentic_onnx.core.errors import GenerationError
    from agentic_onnx.router.service import ServiceError, call, read_state

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise GenerationError(f"The service exited at start (code {child.returncode}).",
                                  f"Its log says why: {log_path}.")
        state = read_state()
        if state is not None and state.pid == child.pid:
            try:
                call(state, "GET", "/health", timeout_s=2.0)
                return state
            except ServiceError:
                pass
        time.sleep(0.2)
    child.terminate()
    raise GenerationError(f"The service did not answer within {START_TIMEOUT_S:.0f} s.",
                          f"Its log may say why: {log_path}.")


@service_app.command("stop")
def stop_service_command(json_output: JsonOpt = False) -> None:
    """Stop the service (its models are unloaded; commands work in process again)."""
    import signal

    from agentic_onnx.router.service import alive, discover, state_path

    out = output.current()
    state = discover()
    if state is None:
        out.result({"stopped": False}, "No service is running.")
        return
    os.kill(state.pid, signal.SIGTERM)  # discover() checked it is the service's process
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and alive(state):
        time.sleep(0.1)
    if alive(state):
        os.kill(state.pid, signal.SIGKILL)
    state_path().unlink(missing_ok=True)
    out.result({**state.to_json(), "stopped": True},
               f"Stopped the service at {state.url} (pid {state.pid}).")


@service_app.command("status")
def status_command(json_output: JsonOpt = False) -> None:
    """Whether the service runs, where, and its loaded models."""
    state, data = _service_models()
    output.current().result(data, "No service is running." if state is None else
                            lambda out, _: (out.line(f"Running at {state.url} (pid {state.pid}); "
                                                     f"{len(data['models'])} model(s) loaded."),
                                            _models_table(out, data["models"])))


def ps_command(json_output: JsonOpt = False) -> None:
    """List the models the service has loaded: EP, memory, requests, when each unloads."""
    state, data = _service_models()
    output.current().result(data, "No service is running." if state is None else
                            lambda out, _: _models_table(out, data["models"]))


def _service_models() -> tuple[Any, dict[str, Any]]:
    """The running service (or None) and what `status`/`ps` report: running, URL, pid, models."""
    from agentic_onnx.router.service import call, discover

    state = discover()
    if state is None:
        return None, {"running": False, "models": []}
    models = call(state, "GET", "/api/ps").get("models", [])
    return state, {"running": True, **state.to_json(), "models": models}


def stop_model_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A loaded model's id (see `agentic-onnx ps`).")],
    json_output: JsonOpt = False,
) -> None:
    """Unload a model from the service now (requests running on it finish first)."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.service import call, discover

    state = discover()
    if state is None:
        raise UsageError("No service is running.", "`agentic-onnx service start` starts one.")
    reply = call(state, "POST", "/api/stop", {"model": model})
    output.current().result(reply, f"Unloaded {reply.get('model', model)}.")


def _models_table(out: output.Output, models: list[dict[str, Any]]) -> None:
    if not models:
        out.line("No model is loaded.")
        return
    from agentic_onnx.cli.render import Column
    from agentic_onnx.core.models.store import format_bytes

    rows = [[str(m.get("id")), str(m.get("execution_provider") or "-"), _gpus(m),
             format_bytes(int(m.get("memory_bytes") or 0)), str(m.get("running", 0)),
             str(m.get("waiting", 0)), _until(m.get("unloads_in_s"))] for m in models]
    out.table(out.fitted_table("Loaded models", [
        Column("id", justify="left"), Column("ep", justify="left"),
        Column("gpu", justify="left", drop_order=3), Column("memory"),
        Column("running", drop_order=2), Column("waiting", drop_order=1),
        Column("unloads in")], rows))


def _gpus(model: dict[str, Any]) -> str:
    """The GPU of each worker (`serve --device-id`), e.g. `0,1`; `-` when none was chosen."""
    ids = [worker.get("device_id") for worker in model.get("workers") or []]
    return ",".join(str(device) for device in ids if device is not None) or "-"


def _until(seconds: Any) -> str:  # noqa: ANN401
    if seconds is None:
        return "never"
    seconds = max(float(seconds), 0.0)
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
