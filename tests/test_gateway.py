"""`serve --route` as a gateway over several real `agentic-onnx serve` processes (deployments of
one provider, router/deployments.py): turns and spreading, a killed node's requests moving to the
others, the breaker in /health, a 429 with Retry-After at a rate limit, cached answers, a private
request no local deployment can take, and tools across dialects (an Anthropic client, OpenAI-
compatible nodes)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from .conftest import MODELS
from .fake_cloud import FakeOpenAI
from .router_support import FAST_RETRY, TINY
from .server_support import Server, free_port, http

NODE_MODEL = "tiny-qwen2-fp32"  # tool-capable: the cross-dialect tools test needs its template
HELLO = [{"role": "user", "content": "Say hello."}]
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
              "required": ["city"], "additionalProperties": False}


def node(home: Path) -> Server:
    """One deployment: a plain `serve` of the node model, with a home of its own."""
    server = Server("--model", str(MODELS / NODE_MODEL), "--threads", "1")
    server.env["AGENTIC_FLOW_HOME"] = str(home)
    return server.start()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    started = [node(tmp_path_factory.mktemp("node")) for _ in range(2)]
    yield started
    for server in started:
        server.stop()


def node_config(deployments: list[Any], **entry: Any) -> dict[str, Any]:
    return {"version": "1.0", "defaultProvider": "nodes", "fallbackChain": ["nodes"],
            "providers": {"onnx": {"models": {"default": "tiny-phi3-fp32"}},
                          "nodes": {"type": "openai", "deployments": deployments,
                                    "timeout": 30000, "maxRetries": 0,
                                    "models": {"default": NODE_MODEL}, **entry}},
            "routing": {"mode": "rule-based", "rules": []}, "retry": dict(FAST_RETRY)}


def gateway(home: Path, config: dict[str, Any]) -> Server:
    """`serve --route` of the small local model, routing by `config` (in this test's home)."""
    (home / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return Server("--model", str(TINY), "--threads", "1", "--route").start()


def ask(server: Server, max_tokens: int = 3, headers: dict[str, str] | None = None,
        **body: Any) -> tuple[int, dict[str, str], Any]:
    return http("POST", f"{server.url}/v1/chat/completions",
                {"model": NODE_MODEL, "messages": HELLO, "max_tokens": max_tokens,
                 "temperature": 0, **body}, headers=headers)


def urls(*servers: Server) -> list[str]:
    return [f"{server.url}/v1" for server in servers]


def test_requests_take_turns_and_concurrent_ones_spread(nodes, hermetic_env):
    served = gateway(hermetic_env, node_config([{"baseUrl": url} for url in urls(*nodes)]))
    try:
        answered = []
        for _ in range(4):
            status, headers, answer = ask(served)
            assert status == 200, answer
            assert headers["x-agentic-provider"] == "nodes" and answer["model"] == NODE_MODEL
            answered.append(headers["x-agentic-deployment"])
        assert answered == urls(*nodes) * 2  # idle nodes: fewest served first, in order
        start = threading.Barrier(4)
        results: list[str] = []

        def client() -> None:
            start.wait(timeout=30)
            status, headers, _ = ask(served, max_tokens=8)
            results.append(headers.get("x-agentic-deployment", str(status)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results) == sorted(urls(*nodes) * 2)
    finally:
        served.stop()


def test_a_killed_node_costs_no_client_request_and_its_breaker_opens(tmp_path_factory, nodes,
                                                                      hermetic_env):
    doomed = node(tmp_path_factory.mktemp("doomed"))
    served = gateway(hermetic_env, node_config([{"baseUrl": url}
                                                for url in urls(nodes[0], doomed)]))
    try:
        for _ in range(2):
            assert ask(served)[0] == 200
        doomed.stop()
        answered = []
        for _ in range(6):
            status, headers, answer = ask(served)
            assert status == 200, answer  # the dead node's turn moves to the live one
            answered.append(headers["x-agentic-deployment"])
        assert answered == urls(nodes[0]) * 6
        states = {state["url"]: state for state in served.health()["deployments"]}
        assert states[urls(doomed)[0]]["breaker"] == "open"  # 3 failures in a row: cooling
        assert states[urls(nodes[0])[0]]["breaker"] == "closed"
    finally:
        served.stop()
        doomed.stop()


def test_a_provider_at_its_rate_limit_is_a_429_with_retry_after(nodes, hermetic_env):
    config = node_config([{"baseUrl": url} for url in urls(*nodes)],
                         rateLimit={"requestsPerMinute": 2})
    served = gateway(hermetic_env, config)
    try:
        assert [ask(served)[0] for _ in range(2)] == [200, 200]
        status, headers, answer = ask(served)
        assert status == 429, answer
        assert answer["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(headers["retry-after"]) <= 60
    finally:
        served.stop()


def test_a_repeated_greedy_request_is_answered_from_the_cache(nodes, hermetic_env):
    config = node_config([{"baseUrl": url} for url in urls(*nodes)])
    config["cache"] = {"enabled": True, "ttl": 3600, "maxSize": 100}
    served = gateway(hermetic_env, config)
    try:
        first = ask(served, max_tokens=5)
        again = ask(served, max_tokens=5)
        other = ask(served, max_tokens=4)  # a changed option is another request
        assert first[0] == again[0] == other[0] == 200
        assert "x-agentic-cache" not in first[1] and again[1]["x-agentic-cache"] == "hit"
        assert again[2]["choices"][0]["message"] == first[2]["choices"][0]["message"]
        assert "x-agentic-cache" not in other[1]
        from agentic_onnx.router.usage import rows

        gateway_rows = [row for row in rows() if row["provider"] == "nodes"]
        assert [row["cached"] for row in gateway_rows] == [0, 1, 0]
        assert gateway_rows[1]["cost_usd"] == 0
    finally:
        served.stop()


def test_a_private_request_no_local_deployment_can_take_is_refused_unsent(hermetic_env):
    remote = FakeOpenAI().start()
    config = node_config([{"baseUrl": f"http://127.0.0.1:{free_port()}/v1", "local": True},
                          {"baseUrl": remote.base_url, "local": False}])
    config["providers"]["onnx"]["models"]["default"] = "not-served-here"  # no local fallback
    served = gateway(hermetic_env, config)
    try:
        status, _, answer = ask(served, headers={"x-agentic-privacy": "high"})
        assert status == 403, answer
        assert remote.count == 0
        status, headers, _ = ask(served)  # not private: the remote deployment may answer
        assert status == 200 and headers["x-agentic-deployment"] == remote.base_url
    finally:
        served.stop()
        remote.stop()


def test_an_anthropic_client_uses_tools_on_openai_compatible_nodes(nodes, hermetic_env):
    served = gateway(hermetic_env, node_config([{"baseUrl": url, "local": True}
                                                for url in urls(*nodes)]))
    try:
        client = served.anthropic_client()
        reply = client.messages.create(
            model=NODE_MODEL, max_tokens=120, messages=[{"role": "user",
                                                         "content": "Weather in Oslo?"}],
            tools=[{"name": "weather", "description": "Weather.", "input_schema": PARAMETERS}],
            tool_choice={"type": "any"})
        assert reply.stop_reason == "tool_use"
        [use] = [block for block in reply.content if block.type == "tool_use"]
        import jsonschema

        assert use.name == "weather"
        jsonschema.validate(use.input, PARAMETERS)
    finally:
        served.stop()
