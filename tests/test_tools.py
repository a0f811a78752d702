"""Tool calling on the random-weight fixtures: the grammar alone must make every call
well-formed, to a given tool, with arguments valid for its parameters."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.errors import ExitCode
from agentic_onnx.core.generation.events import Finish, FirstToken, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.response import Response
from agentic_onnx.core.answers.structured import SchemaError, StructuredOutputError
from agentic_onnx.core.answers.tool_prompt import prompt_messages, renders_tools, template_source
from agentic_onnx.core.answers.tools import (
    MARKER,
    ToolCallReader,
    ToolChoice,
    check_reply,
    grammar,
    parse_tool_choice,
    parse_tools,
    stream_with_tools,
)

from .conftest import MODELS, run_cli

FIXTURES = ["tiny-qwen2-fp32", "tiny-phi3-fp32"]
# Small, bounded tools: the fixtures' context is 512 tokens and their tokenizer is tiny.
TOOLS_JSON = [
    {"type": "function", "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add",
        "parameters": {"type": "object",
                       "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                      "b": {"enum": ["x", "y"]}},
                       "required": ["a", "b"], "additionalProperties": False}}},
]
TOOLS = parse_tools(TOOLS_JSON)
PARAMETERS = {tool.name: tool.parameters for tool in TOOLS}
USER = [{"role": "user", "content": "Weather in Paris?"}]


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


def reply(model, choice: ToolChoice, seed: int | None, messages=USER, max_tokens: int = 200,
          tools=TOOLS):
    engine = model if not isinstance(model, str) else loaded(model)
    options = build_options(max_tokens=max_tokens, temperature=1.0 if seed is not None else 0.0,
                            seed=seed)
    return Response(stream_with_tools(engine, messages, options, tools, choice), "onnx",
                    "m").consume()


def assert_valid_call(call: dict, allowed: set[str]) -> None:
    assert call["id"].startswith("call_") and len(call["id"]) > 10
    assert call["name"] in allowed
    jsonschema.validate(json.loads(call["arguments"]), PARAMETERS[call["name"]])


SEEDS = [None, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("model", FIXTURES)
def test_required_always_gives_one_valid_call(model):
    for seed in SEEDS:
        response = reply(model, ToolChoice("required"), seed)
        assert response.finish_reason == "tool_calls", response.text
        assert response.text == ""
        assert len(response.tool_calls) == 1
        assert_valid_call(response.tool_calls[0], {"weather", "add"})


@pytest.mark.parametrize("model", FIXTURES)
@pytest.mark.parametrize("name", ["weather", "add"])
def test_a_named_choice_calls_that_tool(model, name):
    for seed in SEEDS[:4]:
        response = reply(model, ToolChoice("named", name), seed)
        assert response.finish_reason == "tool_calls"
        [call] = response.tool_calls
        assert call["name"] == name
        assert_valid_call(call, {name})


@pytest.mark.parametrize("model", FIXTURES)
def test_none_gives_plain_text_only(model):
    for seed in SEEDS:
        response = reply(model, ToolChoice("none"), seed, max_tokens=40)
        assert response.tool_calls == []
        assert response.finish_reason in ("stop", "length")
        assert not response.text.startswith(MARKER)


@pytest.mark.parametrize("model", FIXTURES)
def test_auto_gives_text_or_a_valid_call(model):
    for seed in SEEDS:
        response = reply(model, ToolChoice("auto"), seed, max_tokens=60)
        if response.tool_calls:
            assert response.finish_reason == "tool_calls" and response.text == ""
            assert_valid_call(response.tool_calls[0], {"weather", "add"})
        else:
            assert not response.text.startswith(MARKER)


def test_call_events_come_before_usage_and_finish():
    events = list(stream_with_tools(loaded("tiny-phi3-fp32"), USER, build_options(max_tokens=200),
                                    TOOLS, ToolChoice("named", "add")))
    assert [type(e) for e in events] == [FirstToken, ToolCallDelta, Usage, Finish]
    assert events[1].name == "add" and events[-1] == Finish("tool_calls")


# -- the prompt ----------------------------------------------------------------------------------

HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools:\n{%- for tool in tools %}\n{{ tool.function.name }}"
    "{%- endfor %}\nCall one in <tool_call></tool_call> tags.<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant"
    "{%- for call in message.tool_calls %}\n<tool_call>\n{\"name\": \"{{ call.function.name }}\", "
    "\"arguments\": {{ call.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}"
    "\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


@pytest.fixture
def hermes_model(tmp_path):
    """The Qwen2 fixture with a Qwen2.5-style template that renders `tools` itself."""
    folder = tmp_path / "tiny-qwen2-hermes"
    shutil.copytree(MODELS / "tiny-qwen2-fp32", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = HERMES_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "chat_template.jinja").write_text(HERMES_TEMPLATE, encoding="utf-8")
    return load_model(open_model_folder(folder), "cpu", threads=1)


AGENT_HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
]


def test_fixture_templates_do_not_render_tools_so_the_prompt_carries_them():
    assert not renders_tools(template_source(MODELS / "tiny-qwen2-fp32"))
    assert not renders_tools(template_source(MODELS / "tiny-phi3-fp32"))
    engine = loaded("tiny-phi3-fp32")
    described = parse_tools([{"name": "weather", "description": "Weather now.",
                              "parameters": PARAMETERS["weather"]}])
    prompt = engine.render_prompt(prompt_messages(AGENT_HISTORY, described, ToolChoice(), False))
    assert prompt.startswith("<|system|>\nTo call a tool, reply only <tool_call>")
    assert '\n{"name":"weather","description":"Weather now.","parameters":{"type":"object",' \
        in prompt
    assert '<|assistant|>\n<tool_call>\n{"name":"weather","arguments":{"city":"Paris"}}' \
           '\n</tool_call><|end|>' in prompt  # the earlier call, as the model would write it
    assert "<|user|>\n<tool_response>\n18C and sunny\n</tool_response><|end|>" in prompt
    none = engine.render_prompt(prompt_messages(USER, TOOLS, ToolChoice("none"), False))
    assert "weather" not in none


def test_a_template_that_renders_tools_gets_them_natively(hermes_model):
    assert renders_tools(template_source(hermes_model.folder.path))
    native = prompt_messages(AGENT_HISTORY, TOOLS, ToolChoice(), True)
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert native[2] == {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_1"}
    prompt = hermes_model.render_prompt(native, [tool.to_openai() for tool in TOOLS])
    assert prompt.startswith("<|im_start|>system\nTools:\nweather\nadd\n")
    assert '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}' in prompt
    assert "<tool_response>\n18C and sunny\n</tool_response>" in prompt
    for seed in SEEDS[:4]:
        response = reply(hermes_model, ToolChoice("required"), seed, messages=AGENT_HISTORY)
        assert response.finish_reason == "tool_calls"
        assert_valid_call(response.tool_calls[0], {"weather", "add"})


def test_agent_round_trip_locally_ends_with_a_text_answer():
    """Call, result, answer: the second turn sees the result and may answer in text."""
    engine = loaded("tiny-qwen2-fp32")
    first = reply(engine, ToolChoice("required"), 0, tools=TOOLS[:1])
    [call] = first.tool_calls
    history = USER + [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "42"}]
    second = reply(engine, ToolChoice("auto"), 0, messages=history, max_tokens=20,
                   tools=TOOLS[:1])
    assert second.tool_calls == [] and second.text and not second.text.startswith(MARKER)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


# -- grammar, reader and checks (no model) -------------------------------------------------------

def test_grammar_shapes_per_choice():
    auto = grammar(TOOLS, ToolChoice())
    assert auto.startswith("start: TEXT | call\n") and '"const": "add"' in auto
    assert grammar(TOOLS, ToolChoice("required")).startswith("start: call\n")
    named = grammar(TOOLS, ToolChoice("named", "add"))
    assert '"const": "add"' in named and "weather" not in named
    assert grammar(TOOLS, ToolChoice("none")).startswith("start: TEXT\n")
    assert '"whitespace_flexible": false' in auto


def test_refs_in_parameters_are_rebased_for_the_grammar():
    tools = parse_tools([{"name": "f", "parameters": {
        "type": "object", "$defs": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "properties": {"n": {"$ref": "#/$defs/n"}}, "required": ["n"],
        "additionalProperties": False}}])
    assert '"$ref": "#/anyOf/0/properties/arguments/$defs/n"' in grammar(tools, ToolChoice())
    response = Response(stream_with_tools(loaded("tiny-phi3-fp32"), USER,
                                          build_options(max_tokens=80), tools,
                                          ToolChoice("required")), "onnx", "m").consume()
    assert 0 <= json.loads(response.tool_calls[0]["arguments"])["n"] <= 9


def feed(*events):
    return list(ToolCallReader(TOOLS).events(events))


def test_reader_passes_text_on_once_it_cannot_be_a_call():
    out = feed(TextDelta("<to"), TextDelta("ast> hi"), TextDelta("!"), Usage(1, 3), Finish("stop"))
    assert out == [TextDelta("<toast> hi"), TextDelta("!"), Usage(1, 3), Finish("stop")]


def test_reader_turns_a_split_call_into_one_delta():
    out = feed(TextDelta("<tool_"), TextDelta('call>\n{"name":"add","argu'),
               TextDelta('ments":{"a":1,"b":"x"}}\n</tool_call>'), Usage(5, 9), Finish("stop"))
    assert isinstance(out[0], ToolCallDelta) and out[0].name == "add"
    assert out[0].arguments_json_fragment == '{"a":1,"b":"x"}'
    assert out[1:] == [Usage(5, 9), Finish("tool_calls")]


@pytest.mark.parametrize("cut", ['<tool_call>\n{"name":"ad', "<tool_"])
def test_reader_drops_a_cut_call_and_says_so_on_the_finish(cut):
    out = feed(TextDelta(cut), Usage(5, 4), Finish("length"))
    assert out == [Usage(5, 4), Finish("length", tool_call_cut=True)]  # no raw text
    with pytest.raises(StructuredOutputError, match="before the tool call was complete"):
        check_reply("", [], "length", TOOLS, ToolChoice(), tool_call_cut=True)
    with pytest.raises(StructuredOutputError, match="before the tool call was complete"):
        check_reply(cut, [], "length", TOOLS, ToolChoice())  # a cloud reply's raw text


def test_reader_keeps_plain_text_cut_by_the_budget():
    out = feed(TextDelta("Hello th"), Usage(5, 4), Finish("length"))
    assert out == [TextDelta("Hello th"), Usage(5, 4), Finish("length")]


def test_reader_refuses_arguments_that_do_not_validate():
    with pytest.raises(StructuredOutputError, match="arguments of add"):
        feed(TextDelta('<tool_call>\n{"name":"add","arguments":{"a":-1,"b":"x"}}\n</tool_call>'),
             Usage(1, 1), Finish("stop"))


def test_check_reply_for_calls_from_any_provider():
    good = {"id": "x", "name": "add", "arguments": '{"a":1,"b":"x"}'}
    check_reply("", [good], "tool_calls", TOOLS, ToolChoice("required"))
    with pytest.raises(StructuredOutputError, match="unknown tool"):
        check_reply("", [{**good, "name": "rm"}], "tool_calls", TOOLS, ToolChoice())
    with pytest.raises(StructuredOutputError, match="does not match"):
        check_reply("", [{**good, "arguments": '{"a":1}'}], "tool_calls", TOOLS, ToolChoice())
    with pytest.raises(StructuredOutputError, match="requires one"):
        check_reply("just text", [], "stop", TOOLS, ToolChoice("required"))
    with pytest.raises(StructuredOutputError, match="not 'weather'"):
        check_reply("", [good], "tool_calls", TOOLS, ToolChoice("named", "weather"))


@pytest.mark.parametrize(("value", "expected"), [
    (None, ToolChoice("auto")), ("none", ToolChoice("none")),
    ("required", ToolChoice("required")), ("any", ToolChoice("required")),
    ("add", ToolChoice("named", "add")),
    ({"type": "function", "function": {"name": "add"}}, ToolChoice("named", "add")),
    ({"type": "tool", "name": "weather"}, ToolChoice("named", "weather")),
    ({"type": "any"}, ToolChoice("required")), ({"type": "auto"}, ToolChoice("auto")),
])
def test_tool_choice_forms(value, expected):
    assert parse_tool_choice(value, TOOLS) == expected


@pytest.mark.parametrize(("data", "needle"), [
    ([], "non-empty JSON list"),
    ([{"type": "function", "function": {"name": "bad name"}}], "needs a name"),
    ([{"name": "f", "parameters": {"type": "string"}}], "must be an object schema"),
    ([{"name": "f", "parameters": {"type": 3}}], "not a valid JSON Schema"),
    ([{"name": "f"}, {"name": "f"}], "names a tool twice"),
    ([{"type": "retrieval"}], "only function tools"),
])
def test_bad_tools_are_usage_errors(data, needle):
    with pytest.raises(SchemaError, match=needle) as caught:
        parse_tools(data)
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
    with pytest.raises(SchemaError, match="Invalid tool choice"):
        parse_tool_choice("nope", TOOLS)


# -- through `run` ------------------------------------------------------------------------------

@pytest.fixture
def tools_file(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS_JSON), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("model", FIXTURES)
def test_run_json_includes_validated_tool_calls(model, tools_file):
    result = run_cli("run", "-m", str(MODELS / model), "-t", "Weather in Paris?", "--tools",
                     tools_file, "--tool-choice", "required", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["finish_reason"] == "tool_calls" and data["text"] == ""
    [call] = data["tool_calls"]
    assert set(call) == {"id", "name", "arguments"} and isinstance(call["arguments"], dict)
    jsonschema.validate(call["arguments"], PARAMETERS[call["name"]])


def test_run_prints_calls_as_json_lines(tools_file):
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "1+2?", "--tools",
                     tools_file, "--tool-choice", "add")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    call = json.loads(line)
    assert call["name"] == "add"
    jsonschema.validate(call["arguments"], PARAMETERS["add"])


def test_run_tool_choice_none_has_no_tool_calls(tools_file):
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "hi", "--tools",
                     tools_file, "--tool-choice", "none", "--max-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "tool_calls" not in data and not data["text"].startswith(MARKER)


@pytest.mark.parametrize("budget", ["3", "6"])
def test_run_call_cut_by_the_budget_exits_1_and_prints_no_raw_call(tools_file, budget):
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "hi", "--tools",
                     tools_file, "--tool-choice", "required", "--max-tokens", budget)
    assert result.returncode == ExitCode.RUNTIME_ERROR
    assert "finish_reason: length" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # not even the start of `<tool_call>`


def test_run_call_cut_by_the_budget_reports_a_sane_decode_rate(tools_file):
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "hi", "--tools",
                     tools_file, "--tool-choice", "required", "--max-tokens", "6", "--json")
    data = json.loads(result.stdout)
    timings = data["timings"]
    assert data["text"] == "" and data["finish_reason"] == "length"
    assert timings["ttft_ms"] is None and timings["first_token_ms"] > 0
    # 5 tokens after the first, decoded within the request's own duration: the rate cannot
    # exceed 5 tokens over the time from the first token to the end.
    decode_window_s = timings["total_s"] - timings["first_token_ms"] / 1000
    assert timings["decode_tokens_per_s"] == pytest.approx(5 / decode_window_s, rel=0.05)


@pytest.mark.parametrize(("args", "needle"), [
    (["--tool-choice", "delete_all"], "Invalid tool choice"),
    (["--json-mode"], "cannot be combined"),
])
def test_run_tool_usage_errors_exit_2(tools_file, args, needle):
    result = run_cli("run", "-m", str(MODELS / "tiny-phi3-fp32"), "-t", "hi", "--tools",
                     tools_file, *args)
    assert result.returncode == ExitCode.USAGE_ERROR
    assert needle in result.stderr and result.stdout == ""
