"""One chat request, as every front end builds it and every provider takes it.

`run`, `chat`, both `serve` dialects, `router benchmark` and `onnx test` build a `ChatRequest`
once; the router passes it unchanged to each candidate provider (only `model`, and options the
caller left unset, differ per candidate: `for_candidate`). What the answer must be (JSON for a
schema, text or calls to given tools) belongs to the request, and so does the check of a
finished answer (`check`), which runs wherever a request completes: the router's stream for
`run` and `router benchmark`, the server's worker for `serve`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.generation.options import GenerationOptions

if TYPE_CHECKING:
    from agentic_onnx.core.answers.structured import ResponseFormat, StructuredOutputError
    from agentic_onnx.core.answers.tool_spec import Tool, ToolChoice
    from agentic_onnx.core.generation.response import Response
    from agentic_onnx.core.generation.vision import ImageInput

Message = dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    """`messages` in the OpenAI chat shape (assistant `tool_calls`, `role: tool` results; images
    stand where core.generation.vision's markers are, or go with the last user message);
    `options.model_fields_set` tells which options the caller chose (cloud providers send only
    those, and max_tokens). `tools` are checked `Tool`s and `tool_choice` None means auto;
    `response_format` asks for JSON valid for a schema; `model` names the model (None: the
    router or the server picks); `adapter` (local models only) names a LoRA adapter of the model
    or an `.onnx_adapter` file."""

    messages: tuple[Message, ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    images: tuple[ImageInput, ...] = ()
    model: str | None = None
    adapter: str | None = None

    @classmethod
    def of(cls, messages: Sequence[Message], **fields: Any) -> ChatRequest:
        """A request from any sequence of messages (and lists for tools and images)."""
        for name in ("tools", "images"):
            if name in fields:
                fields[name] = tuple(fields[name] or ())
        return cls(tuple(messages), **fields)

    def for_candidate(self, model: str | None, options: GenerationOptions) -> ChatRequest:
        """The same request for one provider of a route: its model, its option defaults."""
        return replace(self, model=model, options=options)

    @property
    def requires_tools(self) -> bool:
        """Whether only a provider that calls tools can answer it."""
        return bool(self.tools) and (self.tool_choice is None or self.tool_choice.mode != "none")

    @property
    def task_text(self) -> str:
        """The last user message: what routing rules and the complexity estimate look at."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content", ""))
        return ""

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools in the OpenAI function format (what cloud providers and templates take)."""
        return [tool.to_openai() for tool in self.tools]

    def check(self, response: Response) -> None:
        """Raise StructuredOutputError unless the finished answer is what was asked: JSON valid
        for the schema, or text/calls that honour the tools and the tool choice."""
        if self.response_format is not None:
            from agentic_onnx.core.answers.structured import check_answer

            check_answer(response.text, response.finish_reason, self.response_format)
        elif self.tools:
            from agentic_onnx.core.answers.tool_spec import AUTO
            from agentic_onnx.core.answers.tools import check_reply

            check_reply(response.text, response.tool_calls, response.finish_reason, self.tools,
                        self.tool_choice or AUTO, response.tool_call_cut)

    def answer_error(self, response: Response) -> StructuredOutputError | None:
        """`check` as a value: the error, or None when the answer is what was asked."""
        from agentic_onnx.core.answers.structured import StructuredOutputError

        try:
            self.check(response)
        except StructuredOutputError as error:
            return error
        return None
