"""--schema and tools mapped to each cloud API's own mechanism (against the loopback fakes),
through the router, and the catalog's `tools` capability in routing."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.events import Finish, TextDelta, ToolCallDelta
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.answers.structured import check_answer, json_mode, response_format
from agentic_onnx.core.answers.tools import ToolChoice, parse_tools
from agentic_onnx.router.config import parse_config
from agentic_onnx.router.execute import route_and_stream
from agentic_onnx.router.providers.anthropic import AnthropicProvider
from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider
from agentic_onnx.router.providers.openrouter import OpenRouterProvider
from agentic_onnx.router.rules import RouteFlags, decide, tool_capability

from .fake_cloud import Behaviour
from .router_support import (  # noqa: F401 - fixtures
    ANTHROPIC_KEY,
    OPENROUTER_KEY,
    TINY,
    anthropic_fake,
    cloud_keys,
    hybrid_config,
    openai_fake,
    openrouter_fake,
    write_config,
)

SCHEMA = {"type": "object", "title": "city answer",
          "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS_JSON = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather now.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}]
TOOLS = parse_tools(TOOLS_JSON)
USER = [{"role": "user", "content": "Weather in Paris?"}]
HISTORY = USER + [
    {"role": "assistant", "content": "Checking.", "tool_calls": [{
        "id": "call_9", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_9", "content": "18C"},
]


def anthropic(fake) -> AnthropicProvider:
    return AnthropicProvider("anthropic", fake.base_url, ANTHROPIC_KEY, "ANTHROPIC_API_KEY", 2.0)


def openai(fake) -> OpenAICompatProvider:
    return OpenAICompatProvider.at("vllm", [fake.base_url], timeout_s=2.0)


def ask(provider, messages=USER, **fields) -> Response:
    if "tools" in fields:  # the OpenAI function format, checked as every front end does
        fields["tools"] = parse_tools(fields["tools"])
    request = ChatRequest.of(messages, options=build_options(max_tokens=64), model="m", **fields)
    return Response(provider.stream(request), provider.name, "m").consume()


# -- Anthropic -------------------------------------------------------------------------------

def test_anthropic_schema_is_a_forced_tool_and_its_input_is_the_answer(anthropic_fake):
    anthropic_fake.script(Behaviour("answer_tool", chunks=('{"city":', ' "Paris"}')))
    fmt = response_format(SCHEMA)
    response = ask(anthropic(anthropic_fake), response_format=fmt)
    body = anthropic_fake.requests[0]["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "city_answer"}
    [tool] = body["tools"]
    assert tool["name"] == "city_answer" and tool["input_schema"] == SCHEMA
    assert response.text == '{"city": "Paris"}' and response.tool_calls == []
    assert response.finish_reason == "stop"
    assert check_answer(response.text, response.finish_reason, fmt) == {"city": "Paris"}


def test_anthropic_json_mode_forces_an_any_object_tool(anthropic_fake):
    anthropic_fake.script(Behaviour("answer_tool", chunks=("{}",)))
    ask(anthropic(anthropic_fake), response_format=json_mode())
    body = anthropic_fake.requests[0]["body"]
    assert body["tools"][0]["input_schema"] == {"type": "object"}


def test_anthropic_refuses_a_non_object_schema_before_sending(anthropic_fake):
    with pytest.raises(UsageError, match="JSON object"):
        ask(anthropic(anthropic_fake), response_format=response_format({"type": "array"}))
    assert anthropic_fake.count == 0


@pytest.mark.parametrize(("choice", "sent"), [
    (None, None), (ToolChoice("auto"), {"type": "auto"}), (ToolChoice("none"), {"type": "none"}),
    (ToolChoice("required"), {"type": "any"}),
    (ToolChoice("named", "get_weather"), {"type": "tool", "name": "get_weather"}),
])
def test_anthropic_tools_and_tool_choice(anthropic_fake, choice, sent):
    anthropic_fake.script(Behaviour("tools"))
    response = ask(anthropic(anthropic_fake), tools=TOOLS_JSON, tool_choice=choice)
    body = anthropic_fake.requests[0]["body"]
    assert body["tools"] == [{"name": "get_weather", "description": "Weather now.",
                              "input_schema": TOOLS_JSON[0]["function"]["parameters"]}]
    assert body.get("tool_choice") == sent
    assert response.tool_calls == [{"id": "toolu_01", "name": "get_weather",
                                    "arguments": '{"location": "Paris"}'}]
    assert response.finish_reason == "tool_calls"


def test_anthropic_gets_tool_use_and_tool_result_blocks(anthropic_fake):
    ask(anthropic(anthropic_fake), HISTORY, tools=TOOLS_JSON)
    messages = anthropic_fake.requests[0]["body"]["messages"]
    assert messages[0] == USER[0]
    assert messages[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_9", "name": "get_weather",
         "input": {"location": "Paris"}}]}
    assert messages[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_9", "content": "18C"}]}


# -- OpenAI-compatible and OpenRouter ----------------------------------------------------------

def test_openai_schema_is_response_format_json_schema(openai_fake):
    openai_fake.script(Behaviour("ok", chunks=('{"city":', '"Paris"}')))
    fmt = response_format({**SCHEMA, "x-guidance": {"whitespace_flexible": False}})
    response = ask(openai(openai_fake), response_format=fmt)
    body = openai_fake.requests[0]["body"]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "city_answer", "schema": SCHEMA}}
    assert "tools" not in body
    assert check_answer(response.text, response.finish_reason, fmt) == {"city": "Paris"}


def test_openai_json_mode_is_json_object(openai_fake):
    ask(openai(openai_fake), response_format=json_mode())
    assert openai_fake.requests[0]["body"]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(("choice", "sent"), [
    (None, None), (ToolChoice("none"), "none"), (ToolChoice("required"), "required"),
    (ToolChoice("named", "get_weather"), {"type": "function",
                                          "function": {"name": "get_weather"}}),
])
def test_openai_tools_tool_choice_and_history(openai_fake, choice, sent):
    openai_fake.script(Behaviour("tools"))
    response = ask(openai(openai_fake), HISTORY, tools=TOOLS_JSON, tool_choice=choice)
    body = openai_fake.requests[0]["body"]
    assert body["tools"] == TOOLS_JSON and body.get("tool_choice") == sent
    assert body["messages"] == HISTORY  # the OpenAI shape is ours: sent as it is
    assert response.tool_calls[0]["name"] == "get_weather"


def test_openrouter_schema_too(openrouter_fake):
    provider = OpenRouterProvider("openrouter", openrouter_fake.base_url, OPENROUTER_KEY,
                                  "OPENROUTER_API_KEY", 2.0)
    ask(provider, response_format=response_format(SCHEMA))
    body = openrouter_fake.requests[0]["body"]
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["usage"] == {"include": True}


# -- the router ---------------------------------------------------------------------------------

def test_router_passes_tools_to_the_local_model(tmp_path):
    config = write_config(tmp_path, {"version": "1.0", "defaultProvider": "onnx",
                                     "providers": {"onnx": {"models": {"default": str(TINY)}}}})
    small = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"enum": [1, 2]}}, "required": ["n"],
        "additionalProperties": False}}}]
    tools = parse_tools(small)
    request = ChatRequest.of(USER, options=build_options(max_tokens=80), tools=tools,
                             tool_choice=ToolChoice("required"))
    routed = route_and_stream(request, RouteFlags(), config_path=str(config), threads=1)
    routed.response.consume()
    [call] = routed.response.tool_calls
    assert call["name"] == "f" and json.loads(call["arguments"])["n"] in (1, 2)
    assert routed.to_json()["tool_calls"][0]["arguments"] in ({"n": 1}, {"n": 2})


def test_router_sends_the_schema_to_the_cloud_candidate(tmp_path, anthropic_fake, cloud_keys):
    anthropic_fake.script(Behaviour("answer_tool", chunks=('{"city":"Oslo"}',)))
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    request = ChatRequest.of(USER, options=build_options(max_tokens=40),
                             response_format=response_format(SCHEMA))
    routed = route_and_stream(request, RouteFlags(provider="anthropic"), config_path=str(config))
    routed.response.consume()
    assert routed.response.text == '{"city":"Oslo"}'
    assert anthropic_fake.requests[0]["body"]["tool_choice"]["type"] == "tool"


def test_catalog_tools_capability():
    assert tool_capability("phi-4-mini-cpu") is True
    assert tool_capability("llama-3.2-1b") is True  # a family: every variant has tools
    assert tool_capability("phi-3-mini-4k-cpu") is False
    assert tool_capability(str(TINY)) is None and tool_capability(None) is None


def routing_config(local_model: str):
    return parse_config({"defaultProvider": "onnx", "fallbackChain": ["onnx", "anthropic"],
                         "providers": {"onnx": {"models": {"default": local_model}},
                                       "anthropic": {}},
                         "routing": {"rules": [{"condition": {"requiresTools": True},
                                                "action": {"provider": "onnx"}}]}}).config


def test_requires_tools_puts_a_local_model_without_tools_behind_the_cloud():
    decision = decide(routing_config("phi-3-mini-4k-cpu"), RouteFlags(requires_tools=True), "x")
    assert [c.provider for c in decision.candidates] == ["anthropic", "onnx"]
    assert decision.provider == "anthropic" and "tool-capable" in decision.reason
    plain = decide(routing_config("phi-3-mini-4k-cpu"), RouteFlags(), "x")
    assert plain.provider == "onnx"


@pytest.mark.parametrize("model", ["phi-4-mini-cpu", str(TINY)])
def test_requires_tools_keeps_a_tool_capable_or_unknown_local_model_first(model):
    decision = decide(routing_config(model), RouteFlags(requires_tools=True), "x")
    assert decision.provider == "onnx" and decision.rule == "routing.rules[0]"


def test_requires_tools_never_overrides_privacy_or_an_explicit_provider():
    config = routing_config("phi-3-mini-4k-cpu")
    private = decide(config, RouteFlags(requires_tools=True, privacy="high"), "x")
    assert [c.provider for c in private.candidates] == ["onnx"]
    explicit = decide(config, RouteFlags(requires_tools=True, provider="onnx"), "x")
    assert explicit.provider == "onnx"


def test_streamed_tool_call_deltas_are_collected_per_id():
    events = [ToolCallDelta("a", "f", ""), TextDelta("x"), ToolCallDelta("a", None, '{"n":'),
              ToolCallDelta("a", None, "1}"), Finish("tool_calls")]
    response = Response(events, "p", "m").consume()
    assert response.tool_calls == [{"id": "a", "name": "f", "arguments": '{"n":1}'}]
    assert response.to_json()["tool_calls"] == [{"id": "a", "name": "f", "arguments": {"n": 1}}]
    assert "tool_calls" not in Response([Finish("stop")], "p", "m").consume().to_json()


def test_onnx_models_shows_the_tools_capability():
    from .conftest import models_table_column, run_cli

    result = run_cli("onnx", "models")
    assert result.returncode == 0, result.stderr
    cells = models_table_column(result.stdout, "tools")
    assert cells["phi-4-mini-cpu"] == "yes" and cells["phi-3-mini-4k-cpu"] == "-"


def test_json_arguments_beyond_a_double_stay_exact_text():
    events = [ToolCallDelta("a", "f", '{"x":1E999}'), Finish("tool_calls")]
    data = Response(events, "p", "m").consume().to_json()
    assert data["tool_calls"][0]["arguments"] == '{"x":1E999}'
    assert "Infinity" not in json.dumps(data)
