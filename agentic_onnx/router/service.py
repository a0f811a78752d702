"""The resident service: how a server registers itself as this user's local service, and how
`run`, `chat`, `onnx test` and the router find it.

A server started as the service (`agentic-onnx service start`, or `serve --service` in the
foreground) writes a state file under AGENTIC_FLOW_HOME (`service.json`, mode 0600): its URL
(loopback only), its pid and a random token that clients send as their bearer key. The file is
removed when that server stops; a file left by a dead process is ignored and removed by the next
client that looks (`discover`). Nothing is found when `AGENTIC_ONNX_NO_SERVICE` is set (or a
command's `--no-service` asks for in-process work).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from agentic_onnx.core.errors import AgenticError, ExitCode, ModelNotFoundError, UsageError
from agentic_onnx.core.paths import home_dir
from agentic_onnx.router.provider_kinds import is_loopback_url

STATE_FILE = "service.json"
NO_SERVICE_ENV = "AGENTIC_ONNX_NO_SERVICE"


@dataclass(frozen=True)
class ServiceState:
    url: str  # http://127.0.0.1:PORT
    pid: int
    token: str
    started: float = 0.0  # the process's start time (psutil): a reused pid is not the service

    def to_json(self) -> dict[str, object]:
        """What may be shown: never the token."""
        return {"url": self.url, "pid": self.pid}


def state_path() -> Path:
    return home_dir() / STATE_FILE


def new_token() -> str:
    """The random per-user token clients send to the service as their bearer key."""
    from agentic_onnx.router.secrets import register_secret

    token = secrets.token_urlsafe(32)
    register_secret(token)
    return token


def register(url: str, token: str, pid: int | None = None) -> ServiceState:
    """Write the state file for a server listening at `url` (this process by default)."""
    from agentic_onnx.core.models.store import write_json_atomic
    from agentic_onnx.router.secrets import register_secret

    pid = pid or os.getpid()
    state = ServiceState(url.rstrip("/"), pid, token, _start_time(pid) or 0.0)
    register_secret(state.token)
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, asdict(state), mode=0o600)
    return state


def unregister(state: ServiceState) -> None:
    """Remove the state file, if it is still this server's."""
    current = read_state()
    if current is not None and current.pid == state.pid and current.token == state.token:
        state_path().unlink(missing_ok=True)


def read_state() -> ServiceState | None:
    """The state file's content when it is well formed (a loopback URL, a pid, a token)."""
    try:
        raw = json.loads(state_path().read_text(encoding="utf-8"))
        state = ServiceState(str(raw["url"]), int(raw["pid"]), str(raw["token"]),
                             float(raw.get("started") or 0.0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not is_loopback_url(state.url) or not state.token or state.pid <= 0:
        return None
    return state


def service_for(use_service: bool, execution_provider: str = "auto", threads: int | None = None,
                device_id: int | None = None) -> ServiceState | None:
    """The service that answers a local command: the running one, unless the command names its
    own EP, threads or GPU (then it runs in process, as asked)."""
    own = execution_provider != "auto" or threads is not None or device_id is not None
    return None if own else discover(use_service)


def discover(use_service: bool = True) -> ServiceState | None:
    """The running service, or None (none registered, disabled, or its process is gone: then
    the stale file is removed)."""
    if not use_service or os.environ.get(NO_SERVICE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    state = read_state()
    if state is None:
        return None
    if not alive(state):
        state_path().unlink(missing_ok=True)
        return None
    from agentic_onnx.router.secrets import register_secret

    register_secret(state.token)
    return state


def alive(state: ServiceState) -> bool:
    """Whether the service's process still runs: its pid, started when the file says (a pid the
    system gave to another process since is not the service)."""
    import psutil

    try:
        process = psutil.Process(state.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not state.started or abs(process.create_time() - state.started) < 1.0
    except psutil.Error:
        return False


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class ServiceError(AgenticError):
    """The service could not be reached, or refused a request of its own API."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 502


def call(state: ServiceState, method: str, path: str, body: dict[str, object] | None = None,
         timeout_s: float = 30.0) -> dict[str, object]:
    """One request to the service's own API (`/api/ps`, `/api/stop`, `/health`) with its token;
    the decoded JSON answer. An error status is a ServiceError carrying the service's message."""
    import httpx2

    try:
        with httpx2.Client(timeout=timeout_s, follow_redirects=False) as client:
            reply = client.request(method, f"{state.url}{path}", json=body,
                                   headers={"authorization": f"Bearer {state.token}"})
    except httpx2.HTTPError as error:
        raise ServiceError(f"The service at {state.url} did not answer ({error}).",
                           "Check `agentic-onnx service status`; restart it if it hangs.") from None
    try:
        data = reply.json()
    except ValueError:
        data = {}
    if reply.status_code >= 400:
        message = _error_message(data) or f"HTTP {reply.status_code}"
        kind = {400: UsageError, 404: ModelNotFoundError}.get(reply.status_code, ServiceError)
        raise kind(f"The service answered: {message}")
    return data if isinstance(data, dict) else {}


def _error_message(data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or "") or None
    return None
