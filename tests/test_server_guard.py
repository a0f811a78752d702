"""`serve` on a laptop: what a web page, a foreign Host, a huge or hostile body, another tenant
or a vanished client can (not) do. Every check goes through a real `serve` on loopback, or the
real ASGI app under uvicorn, with real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from .conftest import MODELS
from .server_support import Server, free_port, http

KEY = "guard-key-456"
PHI3 = str(MODELS / "tiny-phi3-fp32")
LISTED_ORIGIN = "http://localhost:3000"
ALLOWED_NAME = "my-box.lan"
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server():
    """A key, one extra Host name, one CORS origin, and a 1 MiB body cap."""
    served = Server("--model", PHI3, "--threads", "1", "--api-key", KEY,
                    "--allowed-host", ALLOWED_NAME, "--cors-origin", LISTED_ORIGIN,
                    "--max-body-mb", "1").start()
    yield served
    served.stop()


def post(server, path: str, body, headers: dict[str, str] | None = None):
    return http("POST", f"{server.url}{path}", body, {**AUTH, **(headers or {})})


def test_a_post_that_is_not_json_is_a_415_in_each_dialect(server):
    body = json.dumps({"messages": HELLO, "max_tokens": 1}).encode()
    status, _, answer = post(server, "/v1/chat/completions", body, {"content-type": "text/plain"})
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"
    status, _, answer = post(server, "/v1/messages", body,
                             {"content-type": "application/x-www-form-urlencoded"})
    assert status == 415 and answer["type"] == "error"
    status, _, answer = post(server, "/v1/chat/completions", body,
                             {"content-type": "application/json; charset=utf-8"})
    assert status == 200 and answer["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example",
                                  "10.1.2.3"])
def test_a_foreign_host_is_a_403_on_every_route(server, host):
    for method, path in [("GET", "/health"), ("GET", "/v1/models"),
                         ("POST", "/v1/chat/completions")]:
        status, headers, answer = http(method, f"{server.url}{path}",
                                       {"messages": HELLO, "max_tokens": 1} if method == "POST" else None,
                                       {**AUTH, "host": host})
        assert status == 403, (method, path)
        assert "--allowed-host" in answer["error"]["message"]
        assert "access-control-allow-origin" not in {name.lower() for name in headers}
    status, _, answer = post(server, "/v1/messages", {"model": "tiny-phi3-fp32", "max_tokens": 1, "messages": HELLO},
                             {"host": host})
    assert status == 403 and answer["error"]["type"] == "permission_error"


def test_loopback_names_the_bound_address_and_allowed_hosts_are_answered(server):
    for host in [f"localhost:{server.port}", "localhost", f"127.0.0.1:{server.port}",
                 f"127.9.9.9:{server.port}", f"[::1]:{server.port}", f"{ALLOWED_NAME}:{server.port}",
                 ALLOWED_NAME.upper()]:
        assert http("GET", f"{server.url}/health", headers={"host": host})[0] == 200, host
    status, _, answer = post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 1},
                             {"host": f"{ALLOWED_NAME}:{server.port}"})
    assert status == 200 and answer["usage"]["completion_tokens"] == 1


def preflight(server, origin: str):
    return http("OPTIONS", f"{server.url}/v1/chat/completions", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_a_preflight_from_an_unlisted_origin_gets_no_cors_headers(server):
    status, headers, _ = preflight(server, "https://evil.example")
    assert status == 403
    assert not any(name.startswith("access-control-") for name in lowered(headers))
    status, headers, _ = post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 1},
                              {"origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in lowered(headers)


def test_a_listed_origin_gets_cors_headers_on_the_preflight_and_the_request(server):
    status, headers, _ = preflight(server, LISTED_ORIGIN)
    headers = lowered(headers)
    assert status == 204
    assert headers["access-control-allow-origin"] == LISTED_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization, content-type"
    status, headers, answer = post(server, "/v1/chat/completions",
                                   {"messages": HELLO, "max_tokens": 1}, {"origin": LISTED_ORIGIN})
    assert status == 200 and answer["usage"]["completion_tokens"] == 1
    assert lowered(headers)["access-control-allow-origin"] == LISTED_ORIGIN


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP response on a raw socket (the server sets Content-Length)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536) or b"\r\n\r\n"
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


def test_a_declared_oversized_body_is_a_413_before_it_is_sent(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"x-api-key: " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % (2 * 1024 * 1024))
        status, body = read_response(sock)  # not a byte of the body was sent
    assert status == 413 and body["error"]["type"] == "request_too_large"


def test_a_chunked_body_over_the_cap_is_a_413_and_health_answers_meanwhile(server):
    piece = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/json\r\nAuthorization: Bearer " + KEY.encode() +
                     b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert http("GET", f"{server.url}/health")[0] == 200  # mid-upload, the server answers
        for _ in range(1024 * 1024 // len(piece)):  # now past 1 MiB
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        status, body = read_response(sock)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert http("GET", f"{server.url}/health")[0] == 200


def nested(depth: int) -> bytes:
    return b'{"messages": [{"role": "user", "content": "hi"}], "tools": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [150, 100_000])
def test_a_body_nested_absurdly_deep_is_a_400_json_error(server, depth):
    status, _, answer = post(server, "/v1/chat/completions", nested(depth))
    assert status == 400 and "nests deeper" in answer["error"]["message"]
    status, _, answer = post(server, "/v1/messages", nested(depth).replace(
        b'{"messages"', b'{"model": "tiny-phi3-fp32", "max_tokens": 1, "messages"'))
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"


def test_an_integer_of_5000_digits_is_a_400_json_error(server):
    body = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"7" * 5000 + b"}"
    status, _, answer = post(server, "/v1/chat/completions", body)
    assert status == 400 and "too many digits" in answer["error"]["message"]
    status, _, answer = post(server, "/v1/messages", body.replace(b'"messages"', b'"model": "tiny-phi3-fp32", "messages"'))
    assert status == 400 and answer["type"] == "error"


def test_health_without_the_key_says_only_that_the_server_is_up(server):
    for headers in [{}, {"authorization": "Bearer wrong"}]:
        status, _, body = http("GET", f"{server.url}/health", headers=headers)
        assert (status, body) == (200, {"status": "ok"})
    status, _, body = http("GET", f"{server.url}/health", headers=AUTH)
    assert status == 200 and [model["id"] for model in body["models"]] == ["tiny-phi3-fp32"]
    status, _, body = http("GET", f"{server.url}/health", headers={"x-api-key": KEY})
    assert status == 200 and "models" in body


def cached(server, messages, **labels) -> tuple[int, int]:
    """(prompt tokens, cached tokens) of one greedy OpenAI request with these tenant labels."""
    status, _, answer = post(server, "/v1/chat/completions",
                             {"messages": messages, "max_tokens": 2, **labels})
    assert status == 200, answer
    usage = answer["usage"]
    return usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def test_the_kv_cache_is_never_shared_across_tenants(server):
    secret = [{"role": "system", "content": "The launch code is 4 8 15 16 23 42."},
              {"role": "user", "content": "What is the launch code?"}]
    probe = [secret[0], {"role": "user", "content": "Say hi."}]  # shares the system prompt
    cached(server, secret, user="alice")
    prompt, reused = cached(server, probe, user="alice")
    assert 0 < reused < prompt  # the same tenant reuses the shared prefix
    assert cached(server, probe, user="bob") == (prompt, 0)  # another tenant: nothing
    assert cached(server, probe, user="bob")[1] > 0  # ... and reuses its own
    assert cached(server, probe, user="bob", cache_salt="s1") == (prompt, 0)
    assert cached(server, probe, cache_salt="s1", user="bob")[1] > 0
    status, _, answer = post(server, "/v1/messages", {
        "model": "tiny-phi3-fp32", "max_tokens": 2, "system": probe[0]["content"], "messages": probe[1:],
        "metadata": {"user_id": "carol"}})
    assert status == 200 and answer["usage"]["cache_read_input_tokens"] == 0
    assert answer["usage"]["input_tokens"] == prompt


def test_a_client_that_disconnects_mid_stream_leaves_one_log_line():
    """No slow decode: the tiny model writes far faster than a vanished client can be noticed,
    which is how one disconnect used to print a screenful of asyncio warnings."""
    served = Server("--model", PHI3, "--threads", "1").start()
    try:
        before = len(served.output)
        body = json.dumps({"messages": HELLO, "max_tokens": 500, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        deadline = time.monotonic() + 60
        while "client disconnected" not in served.output[before:] and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [line for line in served.output[before:].splitlines() if "GET /health" not in line]
    finally:
        served.stop()
    assert len(lines) == 2, lines
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in lines[0]
    assert "client disconnected before the response was complete" in lines[1]


@contextlib.contextmanager
def unloaded_app() -> Iterator[str]:
    """In process: the real app under uvicorn, with a model pool that never loads (requests get
    as far as the queue, then 503), so no model is needed. Yields the base URL."""
    import uvicorn

    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.server.app import create_app, server_config
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    class NeverLoads(ModelPool):
        def load(self) -> None:
            pass

    pool = NeverLoads([ModelSpec("tiny", open_model_folder(MODELS / "tiny-phi3-fp32"))], "cpu", 1)
    port = free_port()
    server = uvicorn.Server(server_config(create_app(pool), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_json_is_parsed_off_the_event_loop(monkeypatch):
    """Parsing is held until /health has answered, which it can only do if parsing is not
    running on the event loop."""
    from agentic_onnx.server import http as server_http

    parsing, health_answered = threading.Event(), threading.Event()
    decode_body = server_http.decode_body

    def held_decode(raw, schema):  # noqa: ANN001, ANN202
        parsing.set()
        assert health_answered.wait(30)
        return decode_body(raw, schema)

    monkeypatch.setattr(server_http, "decode_body", held_decode)
    with unloaded_app() as url:
        try:
            answers: list = []
            poster = threading.Thread(target=lambda: answers.append(
                http("POST", f"{url}/v1/chat/completions", {"messages": HELLO})))
            poster.start()
            assert parsing.wait(30)
            status, _, body = http("GET", f"{url}/health", timeout=20)
            health_answered.set()
            assert (status, body["status"]) == (503, "loading")
            poster.join(30)
            assert answers[0][0] == 503 and "loading" in answers[0][2]["error"]["message"]
        finally:
            health_answered.set()


def test_a_bug_in_a_route_is_a_json_500_in_the_dialect(monkeypatch):
    from agentic_onnx.server import anthropic_api, openai_api

    def broken(*args):  # noqa: ANN002, ANN202
        raise RuntimeError("a bug")

    monkeypatch.setattr(openai_api, "_prepare", broken)
    monkeypatch.setattr(anthropic_api, "_prepare", broken)
    with unloaded_app() as url:
        status, _, body = http("POST", f"{url}/v1/chat/completions", {"messages": HELLO})
        assert status == 500 and body["error"]["type"] == "server_error"
        status, _, body = http("POST", f"{url}/v1/messages",
                               {"model": "tiny", "max_tokens": 1, "messages": HELLO})
        assert status == 500 and body == {"type": "error", "error": {
            "type": "api_error", "message": "The server failed to answer this request."}}
