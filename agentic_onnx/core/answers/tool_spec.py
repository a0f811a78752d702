"""What a tool and a tool choice are, and the Hermes `<tool_call>` markers: the vocabulary that
both the prompt side (core.answers.tool_prompt) and the decoding side (core.answers.tools) speak, kept apart so
neither imports the other's module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MARKER = "<tool_call>"
CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
ChoiceMode = Literal["auto", "none", "required", "named"]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolChoice:
    """`auto` (text or a call), `none` (text only), `required` (a call to any tool) or `named`
    (a call to the tool `name`)."""

    mode: ChoiceMode = "auto"
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.mode == "named" and self.name else self.mode


AUTO = ToolChoice()
