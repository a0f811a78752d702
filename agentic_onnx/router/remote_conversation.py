"""`chat` on the resident service (router/service.py): the same session, the model loaded there.

The whole history goes to the service each turn as one ChatRequest; the service's KV-cache slot
for this user keeps it, so only the new turn's tokens are computed (the usage's cached tokens
say how many were reused). When the history outgrows the context, the service says so before
any token is generated, and the oldest exchanges are dropped (the system prompt is kept) until
the turn fits, as in process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_onnx.core.generation.conversation import ChatHistory, TurnStats
from agentic_onnx.core.generation.events import StreamEvent, Usage
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.core.errors import PromptTooLongError
from agentic_onnx.router.errors import ProviderError
from agentic_onnx.router.service import ServiceState


@dataclass
class RemoteModel:
    """What a chat session shows of a model the service runs."""

    folder: Any  # core.models.model_folder.ModelFolder, resolved here as in process
    execution_provider: str | None = None


class RemoteConversation(ChatHistory):
    def __init__(self, state: ServiceState, folder: Any, system: str | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 adapter: str | Path | None = None) -> None:
        from agentic_onnx.core.generation.request import ChatRequest
        from agentic_onnx.router.providers.service import ServiceProvider

        super().__init__(RemoteModel(folder), system, on_notice, adapter)
        self._provider = ServiceProvider("onnx", state, resolve=lambda spec: folder)
        self._provider.prepare(ChatRequest((), model=str(folder.path), adapter=self.adapter))
        self.model.execution_provider = self._provider.execution_provider
        self.service = state
        self._dropped = 0

    def send(self, text: str, options: GenerationOptions,
             images: Sequence[Any] = ()) -> Iterator[StreamEvent]:
        from agentic_onnx.core.generation.vision import IMAGE_MARKER

        self.turns.append({"role": "user", "content": IMAGE_MARKER * len(images) + text})
        self.turn_images.append(tuple(images))
        return self._record(self._fitted(options), 0)

    def _fitted(self, options: GenerationOptions) -> Iterator[StreamEvent]:
        """The turn's events; a history too long for the context loses its oldest exchanges."""
        dropped = self._dropped = 0
        kept = list(self.turns), list(self.turn_images)  # restored if even the turn alone fails
        while True:
            request = self._request(options, model=str(self.model.folder.path))
            events = self._provider.stream(request)
            try:
                first = next(events)
            except ProviderError as error:
                if not _too_long(error) or len(self.turns) <= 1:
                    self.turns[:], self.turn_images[:] = kept
                    raise
                two = len(self.turns) > 2 and self.turns[1]["role"] == "assistant"
                del self.turns[:2 if two else 1]
                del self.turn_images[:2 if two else 1]
                dropped += 2 if two else 1
                self._dropped = dropped
                continue
            if dropped:
                self._on_notice(f"The context is full: dropped the {dropped} oldest messages "
                                "(the system prompt is kept).")
            yield first
            yield from events
            return

    def _turn_stats(self, usage: Usage | None, finish: str | None, dropped: int) -> TurnStats:
        dropped = self._dropped
        prompt = usage.prompt_tokens if usage else 0
        cached = usage.cached_tokens if usage else 0
        return TurnStats(prompt_tokens=prompt, reused_tokens=cached, appended_ids=(),
                         completion_tokens=usage.completion_tokens if usage else 0,
                         finish_reason=finish, dropped_messages=dropped, rewound=False,
                         new_tokens=prompt - cached)


def _too_long(error: ProviderError) -> bool:
    """The service's 400 for a prompt longer than the model's context (core PromptTooLongError,
    OpenAI's `context_length_exceeded` code)."""
    return error.status == 400 and error.code == PromptTooLongError.api_code
