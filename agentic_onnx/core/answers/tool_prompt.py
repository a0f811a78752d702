"""How tools and tool history reach a local model's prompt (docs/tools.md, "prompt formats").

A chat template that lists `tools` itself and uses the Hermes `<tool_call>` syntax (Qwen2.5,
Hermes) gets the tools through `apply_chat_template(tools=...)` and the history in the OpenAI
shape; any other template gets the tools as a block in the system message, earlier calls as
`<tool_call>` text and results as `<tool_response>` user turns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentic_onnx.core.answers.tool_spec import CALL_CLOSE, CALL_OPEN, MARKER, Tool, ToolChoice

INSTRUCTIONS = (
    'To call a tool, reply only <tool_call>\n{"name":NAME,"arguments":{...}}\n</tool_call>; '
    "else reply in text. Tools:"
)


def template_source(folder: Path) -> str:
    """The model's chat template text (tokenizer_config.json, else chat_template.jinja)."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: prefer the tool-use one
        named = {item.get("name"): item.get("template") for item in template
                 if isinstance(item, dict)}
        template = named.get("tool_use") or named.get("default")
    if isinstance(template, str):
        return template
    try:
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    except OSError:
        return ""


def renders_tools(template: str) -> bool:
    """True when the template lists `tools` itself and uses our (Hermes) call syntax."""
    return bool(re.search(r"\btools\b", template)) and MARKER in template


def prompt_messages(messages: Sequence[dict[str, Any]], tools: Sequence[Tool],
                    choice: ToolChoice, native: bool) -> list[dict[str, Any]]:
    """The conversation as the template should see it. A native template gets OpenAI-style
    tool calls (arguments as objects) and `tool` messages; any other template gets calls as
    `<tool_call>` text, results as `<tool_response>` user turns and the tools in the system
    message (left out for tool_choice none)."""
    converted = [_native_message(m) if native else _plain_message(m) for m in messages]
    if native or choice.mode == "none":
        return converted
    block = INSTRUCTIONS + "".join("\n" + _compact(_listing(tool)) for tool in tools)
    if converted and converted[0]["role"] == "system":
        return [{"role": "system", "content": f"{converted[0]['content']}\n\n{block}"},
                *converted[1:]]
    return [{"role": "system", "content": block}, *converted]


def _listing(tool: Tool) -> dict[str, Any]:
    listing: dict[str, Any] = {"name": tool.name}
    if tool.description:
        listing["description"] = tool.description
    listing["parameters"] = tool.parameters
    return listing


def _native_message(message: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"role": message.get("role", "user"),
                              "content": message_text(message.get("content"))}
    if message.get("tool_calls"):
        result["tool_calls"] = [{"id": call.get("id"), "type": "function",
                                 "function": {"name": _call_name(call),
                                              "arguments": _call_arguments(call)}}
                                for call in message["tool_calls"]]
    for key in ("tool_call_id", "name"):
        if message.get(key):
            result[key] = message[key]
    return result


def _plain_message(message: dict[str, Any]) -> dict[str, Any]:
    role, text = message.get("role", "user"), message_text(message.get("content"))
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"}
    calls = "".join(CALL_OPEN + _compact({"name": _call_name(call),
                                          "arguments": _call_arguments(call)}) + CALL_CLOSE
                    for call in message.get("tool_calls") or [])
    return {"role": role, "content": text + calls}


def message_text(content: Any) -> str:
    """A message's text: a string, None, or a list of content parts (their text parts)."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content
                       if isinstance(part, dict) and part.get("type") in ("text", "input_text"))
    return str(content)


def _call_name(call: dict[str, Any]) -> str:
    return str((call.get("function") or call).get("name", ""))


def _call_arguments(call: dict[str, Any]) -> Any:
    arguments = (call.get("function") or call).get("arguments", {})
    if isinstance(arguments, str):
        try:
            return json.loads(arguments or "{}")
        except ValueError:
            return arguments
    return arguments


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
