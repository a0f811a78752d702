"""`serve --route`: a request for a model not served here goes through the router (rules,
privacy, fallback, usage log), in either dialect, to the loopback fake clouds; a private
request never leaves the machine."""

from __future__ import annotations

import json

import pytest

from .router_support import (  # noqa: F401 - fixtures
    ANTHROPIC_KEY,
    FAST_RETRY,
    TINY,
    anthropic_fake,
    cloud_keys,
    openai_fake,
)
from .server_support import Server, http

LOCAL = "tiny-phi3-fp32"  # the id the server publishes TINY under
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def gateway(anthropic_fake, openai_fake, cloud_keys, hermetic_env):  # noqa: F811
    """A server of one local model, routing the rest by the user's config (in this test's home)."""
    config = {
        "version": "1.0", "defaultProvider": "anthropic", "fallbackChain": ["anthropic", "onnx"],
        "providers": {
            "onnx": {"models": {"default": LOCAL}},
            "anthropic": {"apiKey": "${ANTHROPIC_API_KEY}", "baseUrl": anthropic_fake.base_url,
                          "timeout": 5000, "maxRetries": 0},
            "vllm": {"type": "openai", "baseUrl": openai_fake.base_url, "timeout": 5000,
                     "models": {"default": "served-by-vllm"}}},
        "routing": {"mode": "rule-based", "rules": [
            {"condition": {"agentType": ["coder"]}, "action": {"provider": "vllm"}}]},
        "retry": dict(FAST_RETRY)}
    (hermetic_env / "config.json").write_text(json.dumps(config), encoding="utf-8")
    served = Server("--model", str(TINY), "--threads", "1", "--route").start()
    yield served
    served.stop()


def test_an_openai_client_reaches_anthropic_through_the_router(gateway, anthropic_fake):
    from agentic_onnx.router import usage as usage_log

    status, headers, answer = http("POST", f"{gateway.url}/v1/chat/completions",
                                   {"model": "claude-haiku-4-5", "messages": HELLO,
                                    "max_tokens": 20})
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "Hello from the cloud."
    assert answer["model"] == "claude-haiku-4-5"
    assert (headers["x-agentic-provider"], headers["x-agentic-model"]) == \
        ("anthropic", "claude-haiku-4-5")
    [sent] = anthropic_fake.requests
    assert sent["body"]["model"] == "claude-haiku-4-5"
    assert sent["body"]["messages"] == HELLO
    [row] = usage_log.rows()
    assert (row["command"], row["provider"], row["outcome"]) == ("serve:openai", "anthropic", "ok")
    assert row["prompt_tokens"] == 12 and row["completion_tokens"] == 4  # the fake's usage


def test_an_anthropic_client_reaches_an_openai_compatible_server_by_rule(gateway, openai_fake):
    """A rule (agent coder -> vllm) picks the provider, `auto` lets it pick the model too; the
    stream crosses dialects."""
    client = gateway.anthropic_client()
    with client.messages.stream(model="auto", max_tokens=20, messages=HELLO,
                                extra_headers={"x-agentic-agent": "coder"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the cloud."
    assert final.model == "served-by-vllm" and final.stop_reason == "end_turn"
    [sent] = openai_fake.requests
    assert sent["body"]["model"] == "served-by-vllm" and sent["body"]["stream"] is True


def test_a_private_request_never_leaves_the_machine(gateway, anthropic_fake, openai_fake):
    status, _, answer = http("POST", f"{gateway.url}/v1/chat/completions",
                             {"model": "claude-haiku-4-5", "messages": HELLO, "max_tokens": 4},
                             headers={"x-agentic-privacy": "high"})
    assert anthropic_fake.requests == [] and openai_fake.requests == []
    # Private: only local candidates, and no local model by that name is served here.
    assert status == 404 and "not served here" in answer["error"]["message"], answer
    # The same private request without a model name is the local model's, answered here.
    status, headers, answer = http("POST", f"{gateway.url}/v1/chat/completions",
                                   {"model": "auto", "messages": HELLO, "max_tokens": 4},
                                   headers={"x-agentic-privacy": "high"})
    assert status == 200, answer
    assert headers["x-agentic-provider"] == "onnx" and answer["model"] == LOCAL
    assert anthropic_fake.requests == [] and openai_fake.requests == []


def test_the_local_model_is_still_answered_directly_and_bad_headers_are_400(gateway,
                                                                          anthropic_fake):
    status, headers, answer = http("POST", f"{gateway.url}/v1/chat/completions",
                                   {"model": LOCAL, "messages": HELLO, "max_tokens": 3})
    assert status == 200 and answer["model"] == LOCAL and headers["x-agentic-provider"] == "onnx"
    status, _, answer = http("POST", f"{gateway.url}/v1/chat/completions",
                             {"model": "claude-haiku-4-5", "messages": HELLO, "max_tokens": 3},
                             headers={"x-agentic-privacy": "maximum"})
    assert status == 400 and "x-agentic-privacy" in answer["error"]["message"]
    assert anthropic_fake.requests == []


def test_without_route_an_unknown_model_is_a_404(anthropic_fake, cloud_keys):  # noqa: F811
    served = Server("--model", str(TINY), "--threads", "1").start()
    try:
        status, _, answer = http("POST", f"{served.url}/v1/chat/completions",
                                 {"model": "claude-haiku-4-5", "messages": HELLO})
    finally:
        served.stop()
    assert status == 404 and answer["error"]["code"] == "model_not_found"
    assert anthropic_fake.requests == []
