"""`serve` through the real Anthropic client: /v1/messages, streamed (Anthropic's own event
sequence) or not."""

from __future__ import annotations

import json
import urllib.request

import anthropic
import pytest

from .conftest import MODELS, expected_cases
from .server_support import Server, http

CASES = [(m, c) for m, c in expected_cases() if m == "tiny-qwen2-fp32"]
IDS = [c["name"] for _, c in CASES]
MODEL = "tiny-qwen2-fp32"


@pytest.fixture(scope="module")
def server():
    served = Server("--model", str(MODELS / MODEL), "--threads", "1").start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.anthropic_client()


def split(case) -> tuple[str | None, list[dict]]:
    """Anthropic keeps the system prompt out of the messages."""
    system = next((m["content"] for m in case["messages"] if m["role"] == "system"), None)
    return system, [m for m in case["messages"] if m["role"] != "system"]


def ask(case, max_tokens: int) -> dict:
    system, messages = split(case)
    return {"model": MODEL, "max_tokens": max_tokens, "messages": messages,
            **({"system": system} if system else {})}


@pytest.mark.parametrize(("model", "case"), CASES, ids=IDS)
def test_a_message_is_the_engines_greedy_output(client, expected, model, case):
    message = client.messages.create(**ask(case, expected["max_new_tokens"]))
    assert message.content[0].text == case["text"]
    assert message.stop_reason == ("end_turn" if case["eos_reached"] else "max_tokens")
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens == len(case["prompt_ids"])
    assert usage.output_tokens == len(case["generated_ids"])


@pytest.mark.parametrize(("model", "case"), CASES, ids=IDS)
def test_a_stream_is_the_engines_greedy_output(client, expected, model, case):
    with client.messages.stream(**ask(case, expected["max_new_tokens"])) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == case["text"] == final.content[0].text
    assert final.stop_reason == ("end_turn" if case["eos_reached"] else "max_tokens")
    assert final.usage.output_tokens == len(case["generated_ids"])


def test_the_stream_is_anthropics_event_sequence(server):
    _, case = CASES[0]
    request = urllib.request.Request(
        f"{server.url}/v1/messages", method="POST",
        data=json.dumps({**ask(case, 6), "stream": True}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read().decode()
    events = [line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")]
    data = [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert set(events[3:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert [d["type"] for d in data] == events
    assert data[0]["message"]["usage"]["output_tokens"] == 0
    assert data[-2]["delta"]["stop_reason"] == "max_tokens" and data[-2]["usage"]["output_tokens"] == 6


def test_a_stop_sequence_is_reported_as_such(client):
    _, case = next((m, c) for m, c in CASES if not c["eos_reached"])
    full = case["text"]
    stop = full[len(full) // 2: len(full) // 2 + 2]
    message = client.messages.create(**ask(case, 24), stop_sequences=[stop, "never-there"])
    assert message.content[0].text == full[:full.index(stop)]
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == stop


def test_a_repeated_conversation_reads_its_prefix_from_the_cache(client):
    _, case = CASES[0]
    client.messages.create(**ask(case, 4))
    again = client.messages.create(**ask(case, 4))
    assert again.usage.cache_read_input_tokens == len(case["prompt_ids"]) - 1
    assert again.usage.input_tokens == 1


@pytest.mark.parametrize("body", [
    {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},  # no max_tokens
    {"model": MODEL, "max_tokens": 8, "messages": []},
    {"model": MODEL, "max_tokens": 8, "temperature": 1.5, "messages": [{"role": "user", "content": "Hi"}]},
    {"model": MODEL, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {}}]}]},
    {"model": MODEL, "max_tokens": 8, "messages": [{"role": "system", "content": "Hi"}]},
])
def test_a_malformed_request_is_a_400_with_an_anthropic_error_body(server, body):
    status, _, answer = http("POST", f"{server.url}/v1/messages", body)
    assert status == 400
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"


def test_the_client_sees_a_bad_request_error(client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 400


def test_serve_requests_are_in_the_usage_log_with_their_front_end_and_ttft(expected):
    """Both dialects write a usage row like `run` does (command column: the front end), so
    `agentic-onnx usage` counts serve traffic. A server of its own: the log is this test's home."""
    from agentic_onnx.router import usage as usage_log

    from .conftest import run_cli

    _, case = CASES[0]
    system, messages = split(case)
    served = Server("--model", str(MODELS / MODEL), "--threads", "1").start()
    try:
        served.anthropic_client().messages.create(
            model=MODEL, max_tokens=expected["max_new_tokens"], messages=messages,
            **({"system": system} if system else {}))
        served.openai_client().chat.completions.create(
            model=MODEL, messages=case["messages"], max_tokens=expected["max_new_tokens"])
    finally:
        served.stop()
    rows = usage_log.rows()
    assert [row["command"] for row in rows] == ["serve:anthropic", "serve:openai"]
    for row in rows:
        assert (row["provider"], row["model"], row["outcome"]) == ("onnx", MODEL, "ok")
        assert row["completion_tokens"] == len(case["generated_ids"])
        assert row["prompt_tokens"] == len(case["prompt_ids"])
        assert 0 < row["ttft_ms"] <= row["latency_ms"] and row["cost_usd"] == 0.0
    summary = json.loads(run_cli("usage", "--json").stdout)
    assert summary["totals"]["requests"] == 2
