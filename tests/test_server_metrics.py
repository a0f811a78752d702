"""`serve --metrics`: `GET /metrics` in the Prometheus text format, through a real server and
the real SDKs. Every number is checked against what the API itself answered (usage fields, the
requests sent, /health), never against a time."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MODELS
from .server_support import Server, http

KEY = "metrics-key-789"
MODEL = "tiny-phi3-fp32"
PHI3 = str(MODELS / MODEL)
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]
AUTH = {"authorization": f"Bearer {KEY}"}
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}


@pytest.fixture(scope="module")
def server():
    """Metrics on, a key, room for one waiting request, and decode steps slowed (10 ms) so that
    a long request holds the model while the test fills the queue."""
    served = Server("--model", PHI3, "--threads", "1", "--metrics", "--api-key", KEY,
                    "--max-queue", "1", slow_decode_s=0.01).start()
    yield served
    served.stop()


def idle(status: dict) -> bool:
    return status["running"] == 0 and status["waiting"] == 0


def scrape(server) -> dict[str, list]:
    """/metrics parsed: sample name -> samples."""
    status, headers, text = http("GET", f"{server.url}/metrics", headers=AUTH)
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain; version="), headers
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(sample.value for sample in samples.get(name, [])
               if all(sample.labels.get(key) == wanted for key, wanted in labels.items()))


class Sent:
    """What the API answered, per front end: outcomes, token sums, and which requests ran to
    their end with text (TTFT) and with more than one token (decode rate)."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.with_text: Counter[str] = Counter()
        self.decoded: Counter[str] = Counter()

    def add(self, front_end: str, outcome: str, prompt: int, cached: int, completion: int,
            text: str) -> None:
        self.outcomes[front_end, outcome] += 1
        self.tokens[front_end, "prompt"] += prompt
        self.tokens[front_end, "cached"] += cached
        self.tokens[front_end, "completion"] += completion
        self.with_text[front_end] += bool(text)
        self.decoded[front_end] += completion > 1


def openai_usage(sent: Sent, outcome: str, usage, text: str) -> None:  # noqa: ANN001
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    sent.add("openai", outcome, usage.prompt_tokens, cached, usage.completion_tokens, text)


def anthropic_usage(sent: Sent, message) -> None:  # noqa: ANN001
    usage, cached = message.usage, message.usage.cache_read_input_tokens or 0
    text = "".join(block.text for block in message.content if block.type == "text")
    sent.add("anthropic", "ok", usage.input_tokens + cached, cached, usage.output_tokens, text)


def test_metrics_count_what_the_api_answered(server):
    sent = Sent()
    oai, claude = server.openai_client(KEY), server.anthropic_client(KEY)
    server.wait_for(idle)
    before = scrape(server)  # the module's other tests may have run first

    for max_tokens in (6, 6):  # the second reuses the first's KV cache
        answer = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=max_tokens)
        openai_usage(sent, "ok", answer.usage, answer.choices[0].message.content)
    chunks = list(oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5,
                                              stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    openai_usage(sent, "ok", chunks[-1].usage, streamed)

    anthropic_usage(sent, claude.messages.create(model=MODEL, max_tokens=7, messages=HELLO))
    with claude.messages.stream(model=MODEL, max_tokens=4, messages=HELLO) as stream:
        anthropic_usage(sent, stream.get_final_message())

    # An answer that fails its schema check (the JSON is cut at 3 tokens): a 422, `invalid`.
    status, _, reply = http("POST", f"{server.url}/v1/chat/completions", {
        "messages": HELLO, "max_tokens": 3, "response_format": {
            "type": "json_schema", "json_schema": {"name": "place", "schema": CITY}}}, AUTH)
    assert status == 422, reply
    kept = reply["completion"]
    usage = kept["usage"]
    sent.add("openai", "invalid", usage["prompt_tokens"],
             usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens"],
             kept["choices"][0]["message"]["content"])

    server.wait_for(idle)
    samples = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(samples, name, model=MODEL, **labels) - value(before, name, model=MODEL, **labels)

    for front_end in ("openai", "anthropic"):
        for outcome in ("ok", "invalid", "error", "interrupted"):
            assert grew("agentic_onnx_requests_total", front_end=front_end, outcome=outcome) \
                == sent.outcomes[front_end, outcome], (front_end, outcome)
        for kind, name in (("prompt", "prompt_tokens"), ("cached", "cached_prompt_tokens"),
                           ("completion", "completion_tokens")):
            assert grew(f"agentic_onnx_{name}_total", front_end=front_end) \
                == sent.tokens[front_end, kind], (front_end, kind)
        assert grew("agentic_onnx_time_to_first_token_seconds_count", front_end=front_end) \
            == sent.with_text[front_end]
        assert grew("agentic_onnx_decode_tokens_per_second_count", front_end=front_end) \
            == sent.decoded[front_end]
        assert grew("agentic_onnx_queue_full_rejections_total", front_end=front_end) == 0
    assert sent.tokens["openai", "cached"] > 0  # the cache hits are counted, not only zeros
    assert sum(sent.with_text.values()) > 0 and sum(sent.decoded.values()) > 0  # not all zeros
    assert grew("agentic_onnx_time_to_first_token_seconds_sum") > 0
    gauges_match_health(server, samples)


def test_a_full_queue_and_a_client_that_leaves_are_counted(server):
    oai = server.openai_client(KEY)
    server.wait_for(idle)
    before = scrape(server)
    running = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=400, stream=True)
    next(iter(running))  # the first request holds the model (400 steps of at least 10 ms)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(oai.chat.completions.create, model=MODEL, messages=HELLO, max_tokens=3)
        server.wait_for(lambda s: s["running"] == 1 and s["waiting"] == 1)
        samples = scrape(server)
        assert value(samples, "agentic_onnx_requests_running", model=MODEL) == 1
        assert value(samples, "agentic_onnx_requests_waiting", model=MODEL) == 1
        status, _, _ = http("POST", f"{server.url}/v1/chat/completions",
                            {"messages": HELLO, "max_tokens": 3}, AUTH)
        assert status == 503
        with pytest.raises(anthropic.APIStatusError) as caught:
            server.anthropic_client(KEY).messages.create(model=MODEL, max_tokens=3, messages=HELLO)
        assert caught.value.status_code == 503
        running.close()  # its client leaves: `interrupted`; the waiting one runs
        answer = waiting.result(timeout=60)
    server.wait_for(idle)
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, model=MODEL, **labels) - value(before, name, model=MODEL, **labels)

    assert grew("agentic_onnx_queue_full_rejections_total", front_end="openai") == 1
    assert grew("agentic_onnx_queue_full_rejections_total", front_end="anthropic") == 1
    assert grew("agentic_onnx_requests_total", front_end="openai", outcome="interrupted") == 1
    assert grew("agentic_onnx_requests_total", front_end="openai", outcome="ok") == 1
    assert grew("agentic_onnx_requests_total", front_end="anthropic") == 0  # 503s are no requests
    assert grew("agentic_onnx_completion_tokens_total") == answer.usage.completion_tokens
    assert grew("agentic_onnx_requests_cancelled_total") == 1
    gauges_match_health(server, after)


def gauges_match_health(server, samples: dict[str, list]) -> None:  # noqa: ANN001
    models = server.health()["models"]
    assert {sample.labels["model"] for sample in samples["agentic_onnx_model_loaded"]} == \
        {model["id"] for model in models}
    for model in models:
        for field, name in (("running", "requests_running"), ("waiting", "requests_waiting"),
                            ("max_queue", "queue_capacity"), ("cancelled", "requests_cancelled_total")):
            assert value(samples, f"agentic_onnx_{name}", model=model["id"]) == model[field], field
        assert value(samples, "agentic_onnx_model_loaded", model=model["id"]) == 1


def test_metrics_need_the_key(server):
    for headers in ({}, {"authorization": "Bearer wrong"}):
        status, _, body = http("GET", f"{server.url}/metrics", headers=headers)
        assert status == 401, body
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]


def test_metrics_pass_the_guard(server):
    status, _, body = http("GET", f"{server.url}/metrics", headers={**AUTH, "host": "evil.example"})
    assert status == 403 and body["error"]["type"] == "permission_error"


def test_without_the_flag_there_is_no_metrics_route():
    served = Server("--model", PHI3, "--threads", "1").start()
    try:
        status, _, _ = http("GET", f"{served.url}/metrics")
        assert status == 404
        assert http("GET", f"{served.url}/health")[0] == 200
    finally:
        served.stop()
