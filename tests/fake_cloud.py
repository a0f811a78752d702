"""Loopback fakes of the cloud APIs, speaking their real wire formats to our real client code.

`FakeAnthropic` serves `POST /v1/messages` as Anthropic's Messages SSE stream; `FakeOpenAI`
serves `POST /v1/chat/completions` (and `/api/v1/...`, as OpenRouter) as chat-completion chunks,
and `POST /v1/embeddings` with `fake_vector`s (kind `json` answers `body` as it is).
Each request takes the next queued `Behaviour` (or the default, a normal answer), so a test
scripts faults in order: 429 with retry-after, 529, 500, an error inside the stream, a hang,
a 401. Every request is counted and recorded (path, headers, JSON body): privacy tests assert
that the count stays zero. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    """What the fake does with one request.

    kind: ok | tools | status | error_event | midstream_error | hang | hang_midstream | truncate
    | answer_tool (Anthropic: `chunks` are the input_json of the tool the request forces)
    | json (embeddings: answer 200 with `body`, however malformed)
    """

    kind: str = "ok"
    chunks: tuple[str, ...] = ("Hello", " from", " the", " cloud.")
    usage: tuple[int, int] = (12, 4)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    error_type: str = "overloaded_error"
    error_code: Any = "server_error"
    hang_s: float = 5.0
    cost: float | None = None
    echo_key: bool = False


def ok(**kwargs: Any) -> Behaviour:
    return Behaviour("ok", **kwargs)


def status(code: int, retry_after: str | None = None, **kwargs: Any) -> Behaviour:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Behaviour("status", status=code, headers=headers, **kwargs)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """Base: a threaded loopback server with a behaviour queue and a request log."""

    paths: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.queue: list[Behaviour] = []
        self.default = Behaviour()
        self.requests: list[dict[str, Any]] = []
        self.expected_key: str | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def script(self, *behaviours: Behaviour) -> FakeServer:
        self.queue.extend(behaviours)
        return self

    # -- request handling ------------------------------------------------------------------
    def _next(self, record: dict[str, Any]) -> Behaviour:
        with self._lock:
            self.requests.append(record)
            return self.queue.pop(0) if self.queue else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": json.loads(raw or b"{}"), "time": time.monotonic()}
                behaviour = fake._next(record)
                if self.path not in fake.paths:
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                key = fake._key_of(self.headers)
                if fake.expected_key is not None and key != fake.expected_key:
                    return self._json(401, fake.auth_error(key if behaviour.echo_key else None))
                fake.respond(self, behaviour, record["body"])

            def _json(self, code: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def start_stream(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()

            def write(self, text: str) -> None:
                self.wfile.write(text.encode())
                self.wfile.flush()

        return Handler

    def hang(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def _key_of(self, headers: Any) -> str | None:
        raise NotImplementedError

    def auth_error(self, echoed: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def respond(self, handler: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        raise NotImplementedError


class FakeAnthropic(FakeServer):
    """Anthropic Messages API: `POST /v1/messages` with `stream: true`."""

    paths = ("/v1/messages",)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _key_of(self, headers: Any) -> str | None:
        return headers.get("x-api-key")

    def auth_error(self, echoed: str | None) -> dict[str, Any]:
        detail = f"invalid x-api-key {echoed}" if echoed else "invalid x-api-key"
        return {"type": "error", "error": {"type": "authentication_error", "message": detail}}

    def respond(self, handler: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        kind = behaviour.kind
        if kind == "status":
            error_body = behaviour.body or {"type": "error", "error": {
                "type": _anthropic_error_type(behaviour.status), "message": "fake failure"}}
            return handler._json(behaviour.status, error_body, behaviour.headers)
        if kind == "hang":
            return self.hang(behaviour.hang_s)
        handler.start_stream()
        event = lambda name, data: handler.write(f"event: {name}\ndata: {json.dumps(data)}\n\n")  # noqa: E731
        event("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
            "model": body.get("model"), "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": behaviour.usage[0], "output_tokens": 1}}})
        if kind == "error_event":
            return event("error", {"type": "error", "error": {
                "type": behaviour.error_type, "message": "Overloaded"}})
        if kind == "answer_tool":
            return self._answer_tool(event, behaviour, body)
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        for number, chunk in enumerate(behaviour.chunks):
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": chunk}})
            if number == 0 and kind == "midstream_error":
                return event("error", {"type": "error", "error": {
                    "type": "api_error", "message": "Internal server error"}})
            if number == 0 and kind == "hang_midstream":
                return self.hang(behaviour.hang_s)
            if number == 0 and kind == "truncate":
                return
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        stop_reason = "end_turn"
        if kind == "tools":
            stop_reason = "tool_use"
            event("content_block_start", {"type": "content_block_start", "index": 1,
                                          "content_block": {"type": "tool_use", "id": "toolu_01",
                                                            "name": "get_weather", "input": {}}})
            for part in ('{"location":', ' "Paris"}'):
                event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": part}})
            event("content_block_stop", {"type": "content_block_stop", "index": 1})
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                "usage": {"output_tokens": behaviour.usage[1]}})
        event("message_stop", {"type": "message_stop"})


    def _answer_tool(self, event: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        """A tool_use block for the tool the request forces (`tool_choice.name`)."""
        name = (body.get("tool_choice") or {}).get("name") or "answer"
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "tool_use", "id": "toolu_answer",
                                                        "name": name, "input": {}}})
        for part in behaviour.chunks:
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "input_json_delta",
                                                    "partial_json": part}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                "usage": {"output_tokens": behaviour.usage[1]}})
        event("message_stop", {"type": "message_stop"})


def _anthropic_error_type(code: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
                code, "api_error")


class FakeOpenAI(FakeServer):
    """OpenAI chat completions (`/v1/chat/completions`) and OpenRouter (`/api/v1/...`)."""

    paths = ("/v1/chat/completions", "/api/v1/chat/completions", "/v1/embeddings",
             "/api/v1/embeddings")

    def __init__(self, openrouter: bool = False) -> None:
        super().__init__()
        self.openrouter = openrouter

    @property
    def base_url(self) -> str:
        prefix = "/api/v1" if self.openrouter else "/v1"
        return f"http://127.0.0.1:{self.port}{prefix}"

    def _key_of(self, headers: Any) -> str | None:
        value = headers.get("authorization") or ""
        return value.removeprefix("Bearer ") or None

    def auth_error(self, echoed: str | None) -> dict[str, Any]:
        detail = f"Incorrect API key provided: {echoed}" if echoed else "No auth credentials found"
        return {"error": {"message": detail, "code": 401}}

    def respond(self, handler: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        kind = behaviour.kind
        if kind == "status":
            error_body = behaviour.body or {"error": {"message": "fake failure",
                                                      "code": behaviour.status}}
            return handler._json(behaviour.status, error_body, behaviour.headers)
        if kind == "hang":
            return self.hang(behaviour.hang_s)
        if handler.path.endswith("/embeddings"):
            return self._embeddings(handler, behaviour, body)
        handler.start_stream()
        model = body.get("model")

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            data = {"id": "gen-fake", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}], **extra}
            handler.write(f"data: {json.dumps(data)}\n\n")

        if self.openrouter:
            handler.write(": OPENROUTER PROCESSING\n\n")
        error = {"code": behaviour.error_code, "message": "Provider returned error"}
        if kind == "error_event":
            return chunk({"content": ""}, "error", error=error)
        chunk({"role": "assistant", "content": ""})
        if self.openrouter:
            handler.write(": OPENROUTER PROCESSING\n\n")
        for number, text in enumerate(behaviour.chunks):
            chunk({"content": text})
            if number == 0 and kind == "midstream_error":
                return chunk({"content": ""}, "error", error=error)
            if number == 0 and kind == "hang_midstream":
                return self.hang(behaviour.hang_s)
            if number == 0 and kind == "truncate":
                return
        finish = "stop"
        if kind == "tools":
            finish = "tool_calls"
            chunk({"tool_calls": [{"index": 0, "id": "call_01", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]})
            for part in ('{"location":', ' "Paris"}'):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        chunk({}, finish)
        usage = {"prompt_tokens": behaviour.usage[0], "completion_tokens": behaviour.usage[1],
                 "total_tokens": sum(behaviour.usage)}
        if behaviour.cost is not None:
            usage["cost"] = behaviour.cost
        handler.write("data: " + json.dumps({"id": "gen-fake", "object": "chat.completion.chunk",
                                              "created": 0, "model": model, "choices": [],
                                              "usage": usage}) + "\n\n")
        handler.write("data: [DONE]\n\n")

    def _embeddings(self, handler: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        if behaviour.kind == "json":
            return handler._json(200, behaviour.body or {})
        texts = body.get("input") or []
        data = [{"object": "embedding", "index": index,
                 "embedding": fake_vector(text, body.get("dimensions") or 4)}
                for index, text in enumerate(texts)]
        handler._json(200, {"object": "list", "data": data, "model": body.get("model"),
                            "usage": {"prompt_tokens": behaviour.usage[0] * len(texts),
                                      "total_tokens": behaviour.usage[0] * len(texts)}})


def fake_vector(text: str, dimensions: int = 4) -> list[float]:
    """The fake's deterministic embedding of `text`: differs for different texts."""
    return [float((len(text) + 7 * position + sum(map(ord, text))) % 101) / 100
            for position in range(dimensions)]
