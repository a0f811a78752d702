"""`serve` through the real OpenAI client: the engine's greedy output, streamed or not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from .conftest import MODELS, expected_cases
from .server_support import Server, http

CASES = expected_cases()
IDS = [f"{m}-{c['name']}" for m, c in CASES]


@pytest.fixture(scope="module")
def server():
    served = Server("--model", str(MODELS / "tiny-phi3-fp32"), "--model",
                    str(MODELS / "tiny-qwen2-fp32"), "--threads", "1").start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.openai_client()


def finish_of(case) -> str:
    return "stop" if case["eos_reached"] else "length"


@pytest.mark.parametrize(("model", "case"), CASES, ids=IDS)
def test_a_completion_is_the_engines_greedy_output(client, expected, model, case):
    completion = client.chat.completions.create(
        model=model, messages=case["messages"], max_tokens=expected["max_new_tokens"], temperature=0)
    assert completion.model == model
    assert completion.choices[0].message.content == case["text"]
    assert completion.choices[0].finish_reason == finish_of(case)
    assert completion.usage.prompt_tokens == len(case["prompt_ids"])
    assert completion.usage.completion_tokens == len(case["generated_ids"])


@pytest.mark.parametrize(("model", "case"), CASES, ids=IDS)
def test_a_stream_is_the_engines_greedy_output(client, expected, model, case):
    stream = client.chat.completions.create(
        model=model, messages=case["messages"], max_tokens=expected["max_new_tokens"],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == case["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish_of(case)
    assert chunks[-1].usage.prompt_tokens == len(case["prompt_ids"])
    assert chunks[-1].usage.completion_tokens == len(case["generated_ids"])


def test_eight_concurrent_streams_each_get_what_they_would_alone(client, expected):
    cases = (CASES * 2)[:8]

    def one(item):
        model, case = item
        stream = client.chat.completions.create(
            model=model, messages=case["messages"], max_tokens=expected["max_new_tokens"], stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(one, cases, timeout=120))
    assert texts == [case["text"] for _, case in cases]


def test_a_stop_string_ends_the_answer_before_it(client):
    model, case = next((m, c) for m, c in CASES if not c["eos_reached"])
    full = case["text"]
    stop = full[len(full) // 2: len(full) // 2 + 2]
    completion = client.chat.completions.create(model=model, messages=case["messages"],
                                                max_tokens=24, stop=[stop])
    assert completion.choices[0].message.content == full[:full.index(stop)]
    assert completion.choices[0].finish_reason == "stop"


def test_a_seed_makes_sampling_reproducible(client):
    model, case = CASES[0]
    texts = {client.chat.completions.create(model=model, messages=case["messages"], max_tokens=12,
                                            temperature=1.0, seed=11).choices[0].message.content
             for _ in range(2)}
    assert len(texts) == 1


def test_a_model_name_it_does_not_serve_is_the_apis_404_never_another_model(server, client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello"}], max_tokens=3)
    error = raised.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-4o" in error["message"] and "tiny-phi3-fp32" in error["message"]
    with pytest.raises(anthropic.NotFoundError) as refused:
        server.anthropic_client().messages.create(
            model="claude-sonnet-4-5", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body["error"]["type"] == "not_found_error"


def test_models_lists_every_served_model(client):
    assert sorted(m.id for m in client.models.list()) == ["tiny-phi3-fp32", "tiny-qwen2-fp32"]


@pytest.mark.parametrize(("field", "value"), [("temperature", 3.0), ("max_tokens", 0), ("n", 2)])
def test_an_out_of_range_field_is_a_400_that_names_it(client, field, value):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-phi3-fp32", messages=[{"role": "user", "content": "Hi"}],
                                       **{field: value})
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["param"] == field


@pytest.mark.parametrize("body", [b"{not json", b"[]", {"messages": []},
                                  {"messages": [{"role": "wizard", "content": "Hi"}]},
                                  {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}])
def test_a_malformed_request_is_a_400_with_an_openai_error_body(server, body):
    status, _, answer = http("POST", f"{server.url}/v1/chat/completions", body)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"]


def test_a_prompt_longer_than_the_context_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-phi3-fp32", max_tokens=4,
                                       messages=[{"role": "user", "content": "word " * 600}])
    assert "context" in caught.value.message


def test_health_reports_each_model_idle(server):
    status, _, health = http("GET", f"{server.url}/health")
    assert status == 200 and health["status"] == "ok"
    assert [m["id"] for m in health["models"]] == ["tiny-phi3-fp32", "tiny-qwen2-fp32"]
    assert all(m["running"] == 0 and m["waiting"] == 0 for m in health["models"])


def test_the_log_never_holds_a_request_body(server, client):
    secret = "do-not-log-this-prompt-4711"
    client.chat.completions.create(model="tiny-phi3-fp32", max_tokens=2,
                                   messages=[{"role": "user", "content": secret}])
    http("POST", f"{server.url}/v1/chat/completions", {"messages": secret})
    assert "POST /v1/chat/completions" in server.output  # the log is there ...
    assert secret not in server.output  # ... without the bodies


def test_a_model_added_with_onnx_add_is_served_under_its_name():
    from .conftest import run_cli

    added = run_cli("onnx", "add", "my-tiny", "--path", str(MODELS / "tiny-phi3-fp32"))
    assert added.returncode == 0, added.stderr
    served = Server("--model", "my-tiny", "--threads", "1").start()
    try:
        client = served.openai_client()
        assert [m.id for m in client.models.list()] == ["my-tiny"]
        completion = client.chat.completions.create(
            model="my-tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=3)
        assert completion.model == "my-tiny" and completion.usage.completion_tokens == 3
    finally:
        served.stop()
