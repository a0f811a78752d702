"""`serve` under pressure: API keys, a full queue, clients that leave, loading, loopback."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from .conftest import MODELS, run_cli
from .server_support import Server, free_port, http

KEY = "test-key-123"
PHI3 = str(MODELS / "tiny-phi3-fp32")
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]


@pytest.fixture(scope="module")
def slow_server():
    """Every decode step takes 50 ms, one request may wait, and a key is required."""
    served = Server("--model", PHI3, "--threads", "1", "--max-queue", "1", "--api-key", KEY,
                    slow_decode_s=0.05).start()
    yield served
    served.stop()


def openai_client(server, key: str = KEY) -> openai.OpenAI:
    return server.openai_client(key)


def anthropic_client(server, key: str = KEY) -> anthropic.Anthropic:
    return server.anthropic_client(key)


def idle(status: dict) -> bool:
    return status["running"] == 0 and status["waiting"] == 0


def test_a_wrong_or_missing_key_is_a_401_in_each_dialect(slow_server):
    with pytest.raises(openai.AuthenticationError):
        openai_client(slow_server, "wrong").chat.completions.create(
            model="tiny-phi3-fp32", messages=HELLO, max_tokens=1)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic_client(slow_server, "wrong").messages.create(model="tiny-phi3-fp32", max_tokens=1, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"
    status, _, body = http("POST", f"{slow_server.url}/v1/chat/completions",
                           {"messages": HELLO})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert http("GET", f"{slow_server.url}/v1/models")[0] == 401
    assert http("GET", f"{slow_server.url}/health")[0] == 200  # health needs no key


def test_the_right_key_works_as_a_bearer_token_and_as_x_api_key(slow_server):
    answer = openai_client(slow_server).chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=2)
    assert answer.usage.completion_tokens == 2
    message = anthropic_client(slow_server).messages.create(model="tiny-phi3-fp32", max_tokens=2, messages=HELLO)
    assert message.usage.output_tokens == 2  # the Anthropic client sends x-api-key


def test_a_full_queue_answers_503_with_retry_after(slow_server):
    client = openai_client(slow_server)
    slow_server.wait_for(idle)
    running = client.chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=400, stream=True)
    chunks = iter(running)
    next(chunks)  # the first request holds the model
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(client.chat.completions.create, model="tiny-phi3-fp32", messages=HELLO, max_tokens=3)
        slow_server.wait_for(lambda s: s["running"] == 1 and s["waiting"] == 1)
        status, headers, body = http("POST", f"{slow_server.url}/v1/chat/completions",
                                     {"messages": HELLO, "max_tokens": 3},
                                     {"authorization": f"Bearer {KEY}"})
        assert status == 503
        assert int(headers["retry-after"]) >= 1
        assert body["error"]["type"] == "server_error"
        with pytest.raises(anthropic.APIStatusError) as caught:
            anthropic_client(slow_server).messages.create(model="tiny-phi3-fp32", max_tokens=3, messages=HELLO)
        assert caught.value.status_code == 503
        running.close()  # the first client leaves: the waiting one gets the model
        assert waiting.result(timeout=60).usage.completion_tokens == 3
    slow_server.wait_for(idle)


def test_a_client_that_disconnects_frees_its_slot(slow_server):
    client = openai_client(slow_server)
    before = slow_server.wait_for(idle)["cancelled"]
    stream = client.chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=400, stream=True)
    next(iter(stream))
    stream.close()
    after = slow_server.wait_for(idle)  # long before 400 tokens at 50 ms each could be done
    assert after["cancelled"] == before + 1
    answer = client.chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=2)
    assert answer.choices[0].finish_reason == "length"


def test_a_client_that_leaves_while_waiting_frees_its_place_in_the_queue(slow_server):
    client = openai_client(slow_server)
    before = slow_server.wait_for(idle)["cancelled"]
    running = client.chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=400, stream=True)
    next(iter(running))
    short = slow_server.openai_client(KEY, timeout=1.5)
    with pytest.raises(openai.APITimeoutError):  # it waits behind the first, then gives up
        short.chat.completions.create(model="tiny-phi3-fp32", messages=HELLO, max_tokens=3)
    status = slow_server.wait_for(lambda s: s["waiting"] == 0)
    assert status["running"] == 1 and status["cancelled"] == before + 1
    running.close()
    slow_server.wait_for(idle)


def test_health_is_503_while_the_models_load():
    """In process: a pool whose loading waits for the test."""
    import uvicorn

    from agentic_onnx.core.models.model_folder import open_model_folder
    from agentic_onnx.server.app import create_app, server_config
    from agentic_onnx.server.pool import ModelPool, ModelSpec

    release = threading.Event()

    class HeldPool(ModelPool):
        def load(self) -> None:
            release.wait(30)
            super().load()

    pool = HeldPool([ModelSpec("tiny", open_model_folder(MODELS / "tiny-phi3-fp32"))], "cpu", 1)
    port = free_port()
    server = uvicorn.Server(server_config(create_app(pool), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        status, headers, body = http("GET", f"{url}/health")
        assert (status, body["status"]) == (503, "loading")
        status, headers, body = http("POST", f"{url}/v1/chat/completions", {"messages": HELLO})
        assert status == 503 and "loading" in body["error"]["message"] and headers["retry-after"]
        release.set()
        assert pool.wait(30)
        assert http("GET", f"{url}/health")[0] == 200
        status, _, body = http("POST", f"{url}/v1/chat/completions",
                               {"messages": HELLO, "max_tokens": 2})
        assert status == 200 and body["usage"]["completion_tokens"] == 2
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=30)


def test_a_model_that_does_not_exist_fails_before_listening():
    result = run_cli("serve", "--model", "./no/such/model", "--port", str(free_port()), timeout=60)
    assert result.returncode == 3
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_listening_beyond_loopback_without_a_key_is_warned_about():
    result = run_cli("serve", "--host", "0.0.0.0", "--model", "./no/such/model", timeout=60)
    assert "without --api-key" in result.stderr


@pytest.mark.parametrize("option", [["--max-queue", "-1"], ["--max-body-mb", "0"]])
def test_bad_serve_options_are_usage_errors(option):
    result = run_cli("serve", *option)
    assert result.returncode == 2 and option[0] in result.stderr


@pytest.mark.parametrize("args", [["serve", "--help"], ["chat", "--help"]])
def test_help_of_serve_and_chat_imports_no_heavy_library(args):
    from .test_cli_startup import imported_heavy_modules

    assert imported_heavy_modules(args) == []


def test_a_port_in_use_is_a_usage_error_with_a_hint():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--model", PHI3, "--threads", "1", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert "Could not listen" in result.stderr and "--port" in result.stderr
