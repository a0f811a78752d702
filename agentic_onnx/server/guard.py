"""The checks every request passes before any route sees it, so that a web page the user happens
to visit cannot use the local server (DNS rebinding, cross-site requests) and one client cannot
stall or flood it.

In order: the `Host` header must name this machine (loopback, the `--host` address, or an
`--allowed-host`), else 403 (DNS rebinding: CVE-2024-28224 in Ollama was this); an `Origin`
header must be one of `--cors-origin`, else 403, and only those origins get CORS headers
(preflights included); a POST body must be `Content-Type: application/json`, else 415, so no
"simple" cross-site request (a form, a `text/plain` fetch) gets through without a preflight; a
body over the cap is a 413 before it is read in full (Content-Length, or the bytes counted as
they arrive when chunked).

Pure ASGI, not Starlette's BaseHTTPMiddleware, so streamed responses pass through untouched.
Errors are JSON in the dialect of the path: Anthropic's on `/v1/messages`, OpenAI's elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from agentic_onnx.server import anthropic_api, openai_api

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MIB = 1024 * 1024
DEFAULT_MAX_BODY_MB = 10.0  # images are the large case: a few base64 photos fit
BODY_METHODS = ("POST", "PUT", "PATCH")
PREFLIGHT_MAX_AGE_S = "600"

log = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class GuardConfig:
    """What `serve` was told: the address it binds, extra Host names, CORS origins, body cap."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * MIB)

    def host_allowed(self, host_header: str | None) -> bool:
        """Loopback names, the bound address (any IP literal when bound to 0.0.0.0 or ::, which
        no DNS answer can rebind), and the names the user listed. A missing Host (HTTP/1.0) is
        allowed: browsers always send one."""
        if not host_header:
            return True
        name = host_name(host_header)
        allowed = {host.lower().rstrip(".") for host in self.allowed_hosts}
        if "*" in allowed or name in allowed or name == "localhost":
            return True
        bind = self.bind_host.strip("[]").lower()
        if name == bind:
            return True
        address = _ip(name)
        if address is None:
            return False
        return address.is_loopback or (_ip(bind) is not None and _ip(bind).is_unspecified)

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.cors_origins or normalize_origin(origin) in {
            normalize_origin(listed) for listed in self.cors_origins}


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8080` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class Rejected(Exception):
    """A request the guard answers itself: status, error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class ClientGone(Exception):
    """The client left while its body was being read."""


def error_json(path: str, status: int, kind: str, message: str) -> JSONResponse:
    """An error body in the dialect of `path` (OpenAI's shape is the generic one)."""
    body = anthropic_api.error_body if path.startswith("/v1/messages") else openai_api.error_body
    return JSONResponse(body(status, kind, message, None), status_code=status)


class RequestGuard:
    """The ASGI middleware: the checks above, CORS headers for listed origins, and one log line
    (not a screenful) when a client leaves before its response is complete."""

    def __init__(self, app: Callable[..., Awaitable[None]], config: GuardConfig | None = None) -> None:
        self.app = app
        self.config = config or GuardConfig()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        try:
            self._check_host_and_origin(headers, origin)
            if _is_preflight(scope, headers, origin):
                await self._preflight(headers, origin, send)
                return
            if scope["method"] in BODY_METHODS:
                receive = await self._read_body(headers, receive)
        except Rejected as error:
            await error_json(scope["path"], error.status, error.kind, error.message)(scope, receive, send)
            return
        except ClientGone:
            return
        await self._run_app(scope, receive, _with_cors(send, origin))

    def _check_host_and_origin(self, headers: Headers, origin: str | None) -> None:
        if not self.config.host_allowed(headers.get("host")):
            raise Rejected(403, "permission_error",
                           "This server answers only requests addressed to this machine (Host "
                           "header); start it with --allowed-host NAME to accept that name.")
        if origin is not None and not self.config.origin_allowed(origin):
            raise Rejected(403, "permission_error",
                           f"Requests from web pages at {origin} are not allowed; start the "
                           f"server with --cors-origin {origin} to allow them.")

    async def _preflight(self, headers: Headers, origin: str | None, send: Send) -> None:
        """A CORS preflight from a listed origin (unlisted ones were refused already)."""
        allow = {"access-control-allow-origin": str(origin), "vary": "Origin",
                 "access-control-allow-methods": "GET, POST, OPTIONS",
                 "access-control-max-age": PREFLIGHT_MAX_AGE_S}
        requested = headers.get("access-control-request-headers")
        if requested:
            allow["access-control-allow-headers"] = requested
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(k.encode(), v.encode()) for k, v in allow.items()]})
        await send({"type": "http.response.body", "body": b""})

    async def _read_body(self, headers: Headers, receive: Receive) -> Receive:
        """The whole body, read here under the cap, then replayed to the route."""
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise Rejected(415, "invalid_request_error",
                           "The request body must be JSON, sent with Content-Type: application/json.")
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay(b"".join(chunks), receive)

    async def _run_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The route, watched: a client that leaves mid-response is logged once. Each streamed
        piece yields to the event loop, so a dead socket is noticed at once rather than after a
        burst of writes that asyncio logs one by one ("socket.send() raised exception.")."""
        progress = {"started": False, "complete": False, "disconnected": False}

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not progress["complete"]:
                progress["disconnected"] = True
            return message

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
            elif message["type"] == "http.response.body":
                progress["complete"] = not message.get("more_body", False)
            await send(message)
            if message["type"] == "http.response.body" and not progress["complete"]:
                await asyncio.sleep(0)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception:
            if progress["started"]:
                raise  # too late for a JSON error: uvicorn logs it and closes the connection
            log.exception('"%s %s" failed', scope["method"], scope["path"])
            await error_json(scope["path"], 500, "api_error",
                             "The server failed to answer this request.")(scope, receive, send)
            return
        if progress["disconnected"]:
            client = scope.get("client") or ("?", 0)
            log.info('%s:%s - "%s %s" client disconnected before the response was complete; '
                     "its request was stopped", client[0], client[1], scope["method"], scope["path"])


def _is_preflight(scope: Scope, headers: Headers, origin: str | None) -> bool:
    return (scope["method"] == "OPTIONS" and origin is not None
            and "access-control-request-method" in headers)


def _too_large(limit: int) -> Rejected:
    return Rejected(413, "request_too_large",
                    f"The request body is larger than this server accepts ({limit / MIB:g} MiB); "
                    "send less, or start the server with a larger --max-body-mb.")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the route the body already read, then the client's own messages
    (a disconnect, which the routes watch for)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _with_cors(send: Send, origin: str | None) -> Send:
    """CORS headers on responses to a listed origin (any Origin that got here is listed)."""
    if origin is None:
        return send

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [
                *message.get("headers", []), (b"access-control-allow-origin", origin.encode()),
                (b"access-control-expose-headers", b"Retry-After"), (b"vary", b"Origin")]}
        await send(message)

    return send_with_cors
