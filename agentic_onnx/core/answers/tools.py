"""Tool calling for local models.

Tools arrive in the OpenAI function format (`{"type": "function", "function": {"name",
"description", "parameters"}}`). For a local model they are rendered into the prompt (by the
chat template itself when it uses `tools` and the Hermes `<tool_call>` syntax, as Qwen2.5's
does; otherwise by a system-message block, see docs/tools.md), and generation is constrained by
a lark grammar that allows either plain text or exactly one call

    <tool_call>
    {"name":"get_weather","arguments":{"city":"Paris"}}
    </tool_call>

to one of the tools, with arguments valid for its parameters (compact JSON; the prompt side is
core.answers.tool_prompt). `ToolCallReader`
turns the text of that call into a `ToolCallDelta` with a fresh id, so every interface (run
--json, serve, the router) sees a structured call, never text that looks like one.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.answers.tool_spec import (  # re-exported: the names callers know tools by
    AUTO,
    CALL_CLOSE,
    CALL_OPEN,
    MARKER,
    Tool,
    ToolChoice,
)

__all__ = ["AUTO", "CALL_CLOSE", "CALL_OPEN", "MARKER", "Tool", "ToolCallReader", "ToolChoice",
           "check_reply", "guidance", "load_tools", "parse_tool_choice", "parse_tools",
           "stream_with_tools"]
from agentic_onnx.core.answers.structured import (
    COMPACT_LAYOUT,
    Guidance,
    SchemaError,
    StructuredOutputError,
    check_schema,
    parse_json,
    parse_json_text,
    read_json_file,
    validate,
)

if TYPE_CHECKING:
    from agentic_onnx.core.generation.engine import LoadedModel
    from agentic_onnx.core.generation.options import GenerationOptions

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMPACT_CALL = re.compile(r'^\{"name":"([A-Za-z0-9_-]+)","arguments":(.*)\}$', re.DOTALL)


# -- loading and validating -----------------------------------------------------------------


def load_tools(path: str) -> list[Tool]:
    """`--tools FILE`: a JSON list of tools (or an object with a `tools` list)."""
    return parse_tools(parse_json_text(read_json_file(path, "--tools"), "--tools"))


def parse_tools(data: Any, what: str = "--tools") -> list[Tool]:
    """Tools in the OpenAI function format; a bare function object is accepted too."""
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise SchemaError(f"{what} must be a non-empty JSON list of tools.",
                          'Use the OpenAI format: [{"type": "function", "function": '
                          '{"name": ..., "parameters": {...}}}].')
    tools = [_parse_tool(entry, f"{what}[{index}]") for index, entry in enumerate(data)]
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SchemaError(f"{what} names a tool twice: {', '.join(duplicates)}.",
                          "Give every tool a unique name.")
    return tools


def _parse_tool(entry: Any, what: str) -> Tool:
    function = entry.get("function") if isinstance(entry, dict) else None
    if isinstance(entry, dict) and entry.get("type", "function") != "function":
        raise SchemaError(f"{what} has type {entry.get('type')!r}; only function tools exist.",
                          'Set "type": "function".')
    spec = function if isinstance(function, dict) else entry
    if not isinstance(spec, dict):
        raise SchemaError(f"{what} is not a tool object.", 'Use {"type": "function", ...}.')
    name = spec.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise SchemaError(f"{what} needs a name of 1-64 letters, digits, '_' or '-' "
                          f"(got {name!r}).", "Rename the tool.")
    parameters = spec.get("parameters", {"type": "object", "properties": {}})
    check_schema(parameters, f"The parameters of tool {name!r}")
    if parameters.get("type", "object") != "object":
        raise SchemaError(f"The parameters of tool {name!r} must be an object schema.",
                          'Use {"type": "object", "properties": {...}}.')
    description = spec.get("description") or ""
    return Tool(name, str(description), parameters)


def parse_tool_choice(value: Any, tools: Sequence[Tool]) -> ToolChoice:
    """`auto`, `none`, `required`, a tool name, or the OpenAI/Anthropic object forms."""
    if value is None:
        return AUTO
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "function" and isinstance(value.get("function"), dict):
            value = value["function"].get("name")
        elif kind == "tool":
            value = value.get("name")
        elif kind in ("auto", "none", "any", "required"):
            value = kind
    if value == "any":
        value = "required"
    if value in ("auto", "none", "required"):
        return ToolChoice(value)  # type: ignore[arg-type]
    if isinstance(value, str) and value in {tool.name for tool in tools}:
        return ToolChoice("named", value)
    known = ", ".join(tool.name for tool in tools)
    raise SchemaError(f"Invalid tool choice {value!r}.",
                      f"Use auto, none, required or one of the tools: {known}.")


# -- the grammar ---------------------------------------------------------------------------


def grammar(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """A lark grammar (llguidance): plain text that does not start with the call marker, and/or
    one call to an allowed tool, compact JSON, then end of sequence."""
    text_rule = f"TEXT: /(?s:.*)/ & ~/{MARKER}(?s:.*)/"
    if choice.mode == "none":
        return f"start: TEXT\n{text_rule}\n"
    allowed = [t for t in tools if choice.mode != "named" or t.name == choice.name]
    branches = [call_schema(tool, f"#/anyOf/{index}") for index, tool in enumerate(allowed)]
    body = {"x-guidance": COMPACT_LAYOUT, "anyOf": branches}
    lines = ["start: TEXT | call" if choice.mode == "auto" else "start: call"]
    if choice.mode == "auto":
        lines.append(text_rule)
    lines += [f"call: {json.dumps(CALL_OPEN)} body {json.dumps(CALL_CLOSE)}",
              f"body: %json {json.dumps(body)}"]
    return "\n".join(lines) + "\n"


def call_schema(tool: Tool, pointer: str = "#") -> dict[str, Any]:
    """The JSON of one call: {"name": <const>, "arguments": <parameters>}, nothing else.
    `pointer` is where this schema sits in the grammar's document, so `$ref`s still resolve."""
    parameters = {key: value for key, value in tool.parameters.items() if key != "x-guidance"}
    return {"type": "object",
            "properties": {"name": {"const": tool.name},
                           "arguments": _rebase_refs(parameters,
                                                     f"{pointer}/properties/arguments")},
            "required": ["name", "arguments"], "additionalProperties": False}


def _rebase_refs(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        return {key: (base + value[1:] if key == "$ref" and isinstance(value, str)
                      and value.startswith("#") else _rebase_refs(value, base))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_rebase_refs(item, base) for item in node]
    return node


def guidance(tools: Sequence[Tool], choice: ToolChoice) -> Guidance:
    return Guidance("lark_grammar", grammar(tools, choice))


# -- reading calls back ------------------------------------------------------------------------


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class ToolCallReader:
    """Turns a local model's event stream into text deltas or one ToolCallDelta.

    Text is passed on as soon as it cannot be the start of a call; a reply that starts with the
    marker is held until the end, parsed, validated, and sent as one ToolCallDelta (with
    Finish("tool_calls")). A call cut off by the token budget is dropped and reported as
    Finish("length", tool_call_cut=True), so nothing broken is ever presented as a call or text.
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def events(self, stream: Iterable[StreamEvent]) -> Iterator[StreamEvent]:
        buffer, mode, usage = "", "undecided", None
        for event in stream:
            if isinstance(event, TextDelta):
                if mode == "text":
                    yield event
                    continue
                buffer += event.text
                if mode == "undecided" and buffer.startswith(MARKER):
                    mode = "call"
                elif mode == "undecided" and not MARKER.startswith(buffer):
                    mode, text, buffer = "text", buffer, ""
                    yield TextDelta(text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Finish):
                yield from self._finish(buffer, mode, usage, event)
            else:
                yield event

    def _finish(self, buffer: str, mode: str, usage: Usage | None,
                finish: Finish) -> Iterator[StreamEvent]:
        reason = finish.reason
        call = self.parse(buffer) if mode == "call" and reason == "stop" else None
        # A call (or the start of its marker) cut off by the token budget is neither a call nor
        # text for the user: it is reported on the Finish, never shown raw.
        cut = call is None and reason == "length" and bool(buffer) and mode in ("call", "undecided")
        if call is not None:
            yield call
            reason = "tool_calls"
        elif buffer and not cut:
            yield TextDelta(buffer)
        if usage is not None:
            yield usage
        yield Finish(reason, tool_call_cut=cut,  # type: ignore[arg-type]
                     stop_sequence=finish.stop_sequence if reason == "stop" else None)

    def parse(self, text: str) -> ToolCallDelta | None:
        """The call in `<tool_call>\\n{json}\\n</tool_call>`, validated; None if it is not one."""
        body = text.strip()
        if not (body.startswith(MARKER) and body.endswith(CALL_CLOSE.strip())):
            return None
        body = body[len(MARKER):-len(CALL_CLOSE.strip())].strip()
        value = parse_json(body, "The tool call")
        if not isinstance(value, dict) or value.get("name") not in self.tools:
            raise StructuredOutputError(f"The model called an unknown tool "
                                        f"({value.get('name') if isinstance(value, dict) else value!r}).",
                                        "Check the tools given to the model.")
        tool = self.tools[value["name"]]
        arguments = value.get("arguments", {})
        validate(arguments, tool.parameters, f"The arguments of {tool.name}")
        compact = _COMPACT_CALL.match(body)
        raw = compact.group(2) if compact else json.dumps(arguments, default=str)
        return ToolCallDelta(new_call_id(), tool.name, raw)


def stream_with_tools(model: LoadedModel, messages: Sequence[dict[str, Any]],
                      options: GenerationOptions, tools: Sequence[Tool],
                      choice: ToolChoice = AUTO,
                      stream: Callable[..., Iterable[StreamEvent]] | None = None,
                      ) -> Iterator[StreamEvent]:
    """A local generation with tools: render, constrain, read the call back. `stream` is
    `model.stream` unless given (`serve` passes its KV-cache-keeping `PrefixCache.stream`)."""
    from agentic_onnx.core.answers.tool_prompt import prompt_messages, renders_tools, template_source

    native = renders_tools(template_source(model.folder.path))
    prompt = prompt_messages(messages, tools, choice, native)
    template_tools = [tool.to_openai() for tool in tools] if native and choice.mode != "none" \
        else None
    events = (stream or model.stream)(prompt, options, guidance=guidance(tools, choice),
                                      tools=template_tools)
    yield from ToolCallReader(tools).events(events)


# -- checking a finished reply (any provider) -------------------------------------------------


def check_reply(text: str, calls: Sequence[dict[str, Any]], finish_reason: str | None,
                tools: Sequence[Tool], choice: ToolChoice, tool_call_cut: bool = False) -> None:
    """Raise StructuredOutputError unless the reply honours the tools and the tool choice:
    every call names a given tool with arguments valid for it, a cut-off call is reported as
    such, and `required`/named choices got their call."""
    started = text.strip()
    cut = tool_call_cut or started.startswith(MARKER) or (started and MARKER.startswith(started))
    if finish_reason == "length" and not calls and (cut or choice.mode in ("required", "named")):
        raise StructuredOutputError("The token budget ran out before the tool call was complete "
                                    "(finish_reason: length).", "Raise --max-tokens.")
    by_name = {tool.name: tool for tool in tools}
    for call in calls:
        tool = by_name.get(call["name"])
        if tool is None:
            raise StructuredOutputError(f"The model called an unknown tool {call['name']!r}.",
                                        "Check the tools given to the model.")
        arguments = parse_json(call["arguments"] or "{}", f"The arguments of {tool.name}")
        validate(arguments, tool.parameters, f"The arguments of {tool.name}")
        if choice.mode == "named" and call["name"] != choice.name:
            raise StructuredOutputError(f"The model called {call['name']!r}, not "
                                        f"{choice.name!r} as --tool-choice asked.", "Run again.")
    if not calls and choice.mode in ("required", "named"):
        raise StructuredOutputError(f"The model did not call a tool, but --tool-choice "
                                    f"{choice.label} requires one.", "Run again.")
