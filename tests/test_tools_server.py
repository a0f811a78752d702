"""The agent loop through `serve` with the real SDKs: a tool call, the tool's result sent back,
a final answer. The model has random weights, so only the grammar makes the calls valid."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import openai
import pytest

from .conftest import MODELS
from .server_support import Server, http

MODEL = "tiny-qwen2-fp32"
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
              "required": ["city"], "additionalProperties": False}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather.",
                                                  "parameters": PARAMETERS}}]
ANTHROPIC_TOOLS = [{"name": "weather", "description": "Weather.", "input_schema": PARAMETERS}]
QUESTION = "Weather in Oslo?"


@pytest.fixture(scope="module")
def server():
    served = Server("--model", str(MODELS / MODEL), "--threads", "1").start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def oai(server):
    return server.openai_client()


@pytest.fixture(scope="module")
def claude(server):
    return server.anthropic_client()


# -- OpenAI ------------------------------------------------------------------------------------

def test_openai_agent_round_trip(oai):
    messages = [{"role": "user", "content": QUESTION}]
    first = oai.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS,
                                        tool_choice="required", max_tokens=120)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "12C, rain"}]
    final = oai.chat.completions.create(model=MODEL, messages=messages, tools=OPENAI_TOOLS,
                                        tool_choice="none", max_tokens=16)
    answer = final.choices[0]
    assert answer.message.tool_calls is None
    assert answer.message.content and not answer.message.content.startswith("<tool_call>")
    assert answer.finish_reason in ("stop", "length")
    alone = oai.chat.completions.create(model=MODEL, messages=messages[:1], tools=OPENAI_TOOLS,
                                        tool_choice="none", max_tokens=1)
    assert final.usage.prompt_tokens > alone.usage.prompt_tokens + 20  # call and result are in


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_openai_streamed_tool_call(oai, seed):
    stream = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "weather"}}, max_tokens=120,
        temperature=1.0, seed=seed, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    [call] = calls.values()
    assert call["id"] and call["name"] == "weather"
    jsonschema.validate(json.loads(call["arguments"]), PARAMETERS)


def test_openai_response_format_json_schema(oai):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "n": {"type": "integer", "minimum": 0,
                                                     "maximum": 9}},
              "required": ["ok", "n"], "additionalProperties": False}
    reply = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "JSON please"}], max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_openai_bad_tools_are_a_400(oai):
    with pytest.raises(openai.BadRequestError, match="needs a name"):
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                    tools=[{"type": "function", "function": {"name": "a b"}}])


# -- Anthropic ---------------------------------------------------------------------------------

def test_anthropic_agent_round_trip(claude):
    messages = [{"role": "user", "content": QUESTION}]
    first = claude.messages.create(model=MODEL, max_tokens=120, messages=messages,
                                   tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "weather" and use.id
    jsonschema.validate(use.input, PARAMETERS)

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                   for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "12C, rain"}]}]
    final = claude.messages.create(model=MODEL, max_tokens=16, messages=messages,
                                   tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"})
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text and not final.content[0].text.startswith("<tool_call>")
    alone = claude.messages.create(model=MODEL, max_tokens=1, messages=messages[:1],
                                   tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"})

    def prompt(usage) -> int:  # noqa: ANN001
        return usage.input_tokens + (usage.cache_read_input_tokens or 0)

    assert prompt(final.usage) > prompt(alone.usage) + 20  # the call and its result are in


def test_anthropic_streamed_tool_use(claude):
    with claude.messages.stream(model=MODEL, max_tokens=120,
                                messages=[{"role": "user", "content": QUESTION}],
                                tools=ANTHROPIC_TOOLS,
                                tool_choice={"type": "tool", "name": "weather"}) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.content[0].name == "weather"
    jsonschema.validate(message.content[0].input, PARAMETERS)


def test_anthropic_tool_stream_is_anthropics_event_sequence(server):
    status, _, text = http("POST", f"{server.url}/v1/messages", {
        "model": MODEL, "max_tokens": 120, "stream": True, "tools": ANTHROPIC_TOOLS,
        "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": QUESTION}]})
    assert status == 200
    events = [line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")]
    assert events == ["message_start", "ping", "content_block_start", "content_block_delta",
                      "content_block_stop", "message_delta", "message_stop"]


def test_anthropic_bad_tool_choice_is_a_400(claude):
    with pytest.raises(anthropic.BadRequestError, match="Invalid tool choice"):
        claude.messages.create(model=MODEL, max_tokens=8, tools=ANTHROPIC_TOOLS,
                               tool_choice={"type": "tool", "name": "nope"},
                               messages=[{"role": "user", "content": "x"}])
