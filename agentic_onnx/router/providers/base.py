"""The provider contract (after simonw/llm's model class): capability flags, and one method that
streams the typed events of `core.generation.events` for a request.

A provider is built from its config entry by `build_provider`; building one never touches the
network. `prepare` does the work that may fail before anything is sent (a missing key, loading a
local model); `stream` sends the request and yields events. Errors are `ProviderError`s whose
`retryable` flag tells the fallback layer whether asking the same provider again may help.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.options import GenerationOptions

if TYPE_CHECKING:
    from agentic_onnx.core.answers.structured import ResponseFormat
    from agentic_onnx.core.answers.tools import ToolChoice
    from agentic_onnx.core.generation.vision import ImageInput

Message = dict[str, Any]


@dataclass(frozen=True)
class ProviderRequest:
    """One chat request. `options.model_fields_set` tells which options the user chose: cloud
    providers send only those (and max_tokens), so their own defaults apply otherwise.

    `messages` use the OpenAI chat shape (assistant `tool_calls`, `role: tool` results);
    `tools` the OpenAI function format, already checked (core.answers.tools.parse_tools);
    `tool_choice` None means auto; `response_format` asks for JSON valid for a schema;
    `images` (core.generation.vision) go with the last user message, or where its markers stand;
    `adapter` (local models only) names a LoRA adapter of the model or an `.onnx_adapter` file."""

    messages: Sequence[Message]
    model: str | None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    tools: Sequence[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    images: Sequence[ImageInput] = ()
    adapter: str | None = None


class Provider:
    """Base class. Subclasses set the flags and implement `stream`."""

    kind: ClassVar[str] = ""
    streams: ClassVar[bool] = True
    supports_tools: ClassVar[bool] = False
    needs_key: ClassVar[bool] = False

    def __init__(self, name: str, local: bool) -> None:
        self.name = name
        self.local = local

    def prepare(self, request: ProviderRequest) -> None:
        """Checks and loading that may fail before anything is sent (default: none)."""

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        raise NotImplementedError

    # Details the caller may show once the stream started (local models fill them in).
    execution_provider: str | None = None
    load_s: float = 0.0
    warnings: list[str] = []

    def __repr__(self) -> str:  # never includes keys
        return f"<{type(self).__name__} {self.name!r} local={self.local}>"


def refuse_images(provider: str, request: ProviderRequest) -> None:
    """Cloud providers do not take our images yet: say so before anything is sent."""
    if request.images:
        from agentic_onnx.core.errors import UsageError

        raise UsageError(f"Provider {provider!r} cannot take images from agentic-onnx yet; "
                         "nothing was sent.",
                         "Use a local vision model (--provider onnx --model <vision model>).")


def system_and_turns(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """Split leading system messages off (Anthropic takes them as a separate field)."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    turns = [m for m in messages if m.get("role") != "system"]
    return ("\n\n".join(system) if system else None), turns
