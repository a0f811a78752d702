"""Each cloud provider against a loopback fake that speaks its real wire format."""

from __future__ import annotations

import threading

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.events import Finish, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.errors import MissingKeyError, ProviderError
from agentic_onnx.router.providers.anthropic import AnthropicProvider
from agentic_onnx.router.providers.http import retry_after_seconds
from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider
from agentic_onnx.router.providers.openrouter import OpenRouterProvider

from .fake_cloud import Behaviour, FakeOpenAI, ok, status
from .router_support import (  # noqa: F401 - fixtures
    ANTHROPIC_KEY,
    OPENROUTER_KEY,
    anthropic_fake,
    openai_fake,
    openrouter_fake,
)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def request(model: str = "m", **options: object) -> ChatRequest:
    return ChatRequest.of(MESSAGES, model=model, options=build_options(**options))


def anthropic(fake, key: str | None = ANTHROPIC_KEY, timeout_s: float = 2.0) -> AnthropicProvider:
    return AnthropicProvider("anthropic", fake.base_url, key, "ANTHROPIC_API_KEY", timeout_s)


def openrouter(fake, key: str | None = OPENROUTER_KEY) -> OpenRouterProvider:
    return OpenRouterProvider("openrouter", fake.base_url, key, "OPENROUTER_API_KEY", 2.0)


def texts(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- Anthropic ----------------------------------------------------------------------------------

def test_anthropic_stream_text_usage_and_request_shape(anthropic_fake):
    events = list(anthropic(anthropic_fake).stream(request("claude-x", max_tokens=64,
                                                           temperature=0.5)))
    assert texts(events) == "Hello from the cloud."
    assert events[-2:] == [Usage(12, 4), Finish("stop")]
    sent = anthropic_fake.requests[0]
    assert sent["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    body = sent["body"]
    assert body["system"] == "Be brief." and body["messages"] == [MESSAGES[1]]
    assert (body["model"], body["max_tokens"], body["stream"], body["temperature"]) == \
        ("claude-x", 64, True, 0.5)
    assert "top_k" not in body  # options the user did not choose are left to the API


def test_anthropic_tool_use_becomes_tool_call_deltas(anthropic_fake):
    anthropic_fake.script(Behaviour("tools"))
    events = list(anthropic(anthropic_fake).stream(request()))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta("toolu_01", "get_weather", "")
    assert "".join(c.arguments_json_fragment for c in calls) == '{"location": "Paris"}'
    assert {c.id for c in calls} == {"toolu_01"}
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize(("behaviour", "retryable", "code"), [
    (status(429, retry_after="7"), True, 429),
    (status(529), True, 529),
    (status(500), True, 500),
    (status(400), False, 400),
    (status(403), False, 403),
    (Behaviour("error_event"), True, 529),  # overloaded_error inside the stream
])
def test_anthropic_errors_are_classified(anthropic_fake, behaviour, retryable, code):
    anthropic_fake.script(behaviour)
    with pytest.raises(ProviderError) as caught:
        list(anthropic(anthropic_fake).stream(request()))
    assert (caught.value.retryable, caught.value.status) == (retryable, code)
    if code == 429:
        assert caught.value.retry_after_s == 7.0


def test_anthropic_wrong_key_is_401_not_retryable_and_names_the_variable(anthropic_fake):
    with pytest.raises(ProviderError) as caught:
        list(anthropic(anthropic_fake, key="sk-ant-wrong-0000000000").stream(request()))
    assert caught.value.status == 401 and not caught.value.retryable
    assert "ANTHROPIC_API_KEY" in caught.value.one_line()


def test_anthropic_missing_key_names_the_variable_and_sends_nothing(anthropic_fake):
    with pytest.raises(MissingKeyError, match="ANTHROPIC_API_KEY is not set"):
        list(anthropic(anthropic_fake, key=None).stream(request()))
    assert anthropic_fake.count == 0


def test_anthropic_hang_times_out_as_retryable(anthropic_fake):
    anthropic_fake.script(Behaviour("hang", hang_s=3))
    with pytest.raises(ProviderError, match="timed out") as caught:
        list(anthropic(anthropic_fake, timeout_s=0.3).stream(request()))
    assert caught.value.retryable


def test_anthropic_mid_stream_error_after_text(anthropic_fake):
    anthropic_fake.script(Behaviour("midstream_error"))
    seen = []
    with pytest.raises(ProviderError, match="api_error"):
        for event in anthropic(anthropic_fake).stream(request()):
            seen.append(event)
    assert texts(seen) == "Hello"


# -- OpenRouter / OpenAI-compatible --------------------------------------------------------------

def test_openrouter_skips_processing_comments_reads_usage_and_cost(openrouter_fake):
    openrouter_fake.script(ok(cost=0.00042))
    provider = openrouter(openrouter_fake)
    events = list(provider.stream(request("anthropic/claude-sonnet-4.5", seed=3)))
    assert texts(events) == "Hello from the cloud."
    assert events[-2:] == [Usage(12, 4), Finish("stop")]
    assert provider.reported_cost_usd == pytest.approx(0.00042)
    sent = openrouter_fake.requests[0]
    assert sent["path"] == "/api/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {OPENROUTER_KEY}"
    assert sent["headers"]["x-title"] == "agentic-onnx" and sent["headers"]["http-referer"]
    body = sent["body"]
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["usage"] == {"include": True} and body["seed"] == 3
    assert body["messages"] == MESSAGES


def test_openai_tool_call_deltas(openai_fake):
    openai_fake.script(Behaviour("tools"))
    provider = OpenAICompatProvider.at("vllm", [openai_fake.base_url], timeout_s=2.0)
    events = list(provider.stream(request()))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "get_weather" and {c.id for c in calls} == {"call_01"}
    assert "".join(c.arguments_json_fragment for c in calls) == '{"location": "Paris"}'
    assert events[-1] == Finish("tool_calls")


def test_openrouter_error_inside_a_200_stream_is_retryable(openrouter_fake):
    openrouter_fake.script(Behaviour("error_event", error_code=502))
    with pytest.raises(ProviderError, match="Provider returned error") as caught:
        list(openrouter(openrouter_fake).stream(request()))
    assert caught.value.retryable and caught.value.status == 502


@pytest.mark.parametrize(("code", "retryable"), [(402, False), (401, False), (400, False),
                                                 (429, True), (500, True), (503, True)])
def test_openrouter_statuses(openrouter_fake, code, retryable):
    openrouter_fake.script(status(code))
    with pytest.raises(ProviderError) as caught:
        list(openrouter(openrouter_fake).stream(request()))
    assert (caught.value.status, caught.value.retryable) == (code, retryable)


def test_truncated_stream_is_an_error_not_a_short_answer(openai_fake):
    openai_fake.script(Behaviour("truncate"))
    provider = OpenAICompatProvider.at("vllm", [openai_fake.base_url], timeout_s=2.0)
    with pytest.raises(ProviderError, match="closed the stream"):
        list(provider.stream(request()))


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    # A date in the past tells nothing useful: treated as absent, so our own backoff applies.
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({}) is None


# -- balancing -----------------------------------------------------------------------------------

def test_concurrent_requests_spread_over_base_urls():
    fakes = [FakeOpenAI().start() for _ in range(2)]
    try:
        for fake in fakes:
            fake.default = Behaviour("ok", chunks=("slow",) * 1)
        gate = threading.Barrier(4)
        provider_urls = [fake.base_url for fake in fakes]

        def one() -> None:
            provider = OpenAICompatProvider.at("pool", provider_urls, timeout_s=2.0)
            stream = provider.stream(request())
            next(stream)  # the request is in flight (headers and first chunk received)
            gate.wait(timeout=5)
            list(stream)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert [fake.count for fake in fakes] == [2, 2]
    finally:
        for fake in fakes:
            fake.stop()
