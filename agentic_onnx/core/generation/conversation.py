"""Multi-turn sessions (`chat`): the history, kept to the context, over one LocalGeneration.

A `Conversation` sends the whole history as one `ChatRequest` each turn; its LocalGeneration
keeps the KV cache, so only the new turn's tokens are computed. It drops the oldest turns (never
the system prompt) when the context fills, and says so. A turn may carry images
(core.generation.vision): while the history holds one, each turn runs the whole history through
the model's multimodal processor with a new generator (genai feeds a multimodal prompt all at
once, so there is no prefix to keep), and the kept generator is reset.

Not thread-safe, like `LoadedModel`: one generation at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.errors import PromptTooLongError
from agentic_onnx.core.generation.engine import LoadedModel, Message
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, Usage
from agentic_onnx.core.generation.local import LocalGeneration
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.core.generation.prefix_cache import PrefixCache
from agentic_onnx.core.generation.request import ChatRequest

if TYPE_CHECKING:
    from pathlib import Path

    from agentic_onnx.core.generation.vision import ImageInput, VisionPrompt


@dataclass(frozen=True)
class TurnStats:
    """One turn of a conversation, for `/stats`, `/save` and tests."""

    prompt_tokens: int  # the whole history as the model saw it this turn
    reused_tokens: int  # of those, kept in the KV cache from the turns before
    appended_ids: tuple[int, ...]  # fed to the model this turn: the new turn's tokens
    completion_tokens: int
    finish_reason: str | None
    dropped_messages: int  # oldest messages dropped this turn so the history fits
    rewound: bool
    new_tokens: int | None = None  # when the ids are not known (a service computed them)

    @property
    def appended_tokens(self) -> int:
        return self.new_tokens if self.new_tokens is not None else len(self.appended_ids)


class ChatHistory:
    """What a chat session keeps, wherever its model runs: the system prompt, the turns (and
    their images), each turn's statistics, `/save`'s transcript. Subclasses stream a turn."""

    def __init__(self, model: Any, system: str | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 adapter: str | Path | None = None) -> None:
        self.model = model  # .folder (name, context_length) and .execution_provider
        self.adapter = str(adapter) if adapter is not None else None  # LoRA: a name or a file
        self.system = system or None
        self.turns: list[Message] = []
        self.turn_images: list[tuple[ImageInput, ...]] = []  # one entry per turn, () for most
        self.history: list[TurnStats] = []
        self._on_notice = on_notice or (lambda message: None)

    def _record(self, events: Iterator[StreamEvent], dropped: int) -> Iterator[StreamEvent]:
        """Pass the turn's events on; the answer joins the history when the stream ends, also
        when it is closed early (Ctrl-C): the history holds what the user saw. A stream that
        fails before its first event leaves the history as it was."""
        chunks: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        started = False
        try:
            for event in events:
                started = True
                if isinstance(event, TextDelta):
                    chunks.append(event.text)
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finish):
                    finish = event.reason
                yield event
        except BaseException:
            if not started:
                self.turns.pop()
                self.turn_images.pop()
                raise
            self._finish_turn(chunks, usage, finish, dropped)
            raise
        self._finish_turn(chunks, usage, finish, dropped)

    def _finish_turn(self, chunks: list[str], usage: Usage | None, finish: str | None,
                     dropped: int) -> None:
        self.turns.append({"role": "assistant", "content": "".join(chunks)})
        self.turn_images.append(())
        self.history.append(self._turn_stats(usage, finish, dropped))

    def _turn_stats(self, usage: Usage | None, finish: str | None, dropped: int) -> TurnStats:
        raise NotImplementedError

    def _request(self, options: GenerationOptions, **fields: Any) -> ChatRequest:
        """The whole history as one request; its images while the history holds any."""
        images = [image for turn in self.turn_images for image in turn]
        return ChatRequest.of(self.messages, options=options, images=images,
                              adapter=self.adapter, **fields)

    @property
    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns

    @property
    def last(self) -> TurnStats | None:
        return self.history[-1] if self.history else None

    @property
    def has_images(self) -> bool:
        return any(self.turn_images)

    def clear(self) -> None:
        """Forget the turns, keep the system prompt (and the KV cache, whose prefix still fits)."""
        self.turns.clear()
        self.turn_images.clear()

    def set_system(self, system: str | None) -> None:
        self.system = system or None

    def to_json(self) -> dict[str, object]:
        """The transcript `/save` writes."""
        system = self.messages[:len(self.messages) - len(self.turns)]
        messages = system + [_saved_message(turn, images)
                             for turn, images in zip(self.turns, self.turn_images)]
        return {"model": self.model.folder.name, "system": self.system,
                "messages": messages, "turns": [_stats_json(turn) for turn in self.history]}


class Conversation(ChatHistory):
    """A multi-turn chat with one model in this process; the KV cache is kept between turns.

    When the history no longer leaves room for an answer (`reserve_tokens`: the smaller of
    `max_tokens` and a quarter of the context), the oldest exchanges are dropped, the system
    prompt is kept, and `on_notice` is told.
    """

    def __init__(self, model: LoadedModel, system: str | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 adapter: str | Path | None = None) -> None:
        super().__init__(model, system, on_notice, adapter)
        self._image_tokens: dict[ImageInput, int] = {}  # measured cost of images already sent
        self._local = LocalGeneration(model, reseed_each_request=False)
        if self.adapter is not None:
            self._local.adapter_file(self.adapter)  # a wrong name fails before the first turn

    @property
    def cache(self) -> PrefixCache:
        return self._local.cache

    def send(self, text: str, options: GenerationOptions,
             images: Sequence[ImageInput] = ()) -> Iterator[StreamEvent]:
        """Stream the answer to `text` (with `images` first in the turn). The answer joins the
        history when the stream ends, also when it is closed early (Ctrl-C): the history holds
        what the user saw. Image errors (and a prompt too long) raise here, before any model
        runs, and leave the history as it was."""
        from agentic_onnx.core.generation.vision import IMAGE_MARKER

        self.turns.append({"role": "user", "content": IMAGE_MARKER * len(images) + text})
        self.turn_images.append(tuple(images))
        try:
            dropped = self._fit(options)
            request = self._request(options)
            if self.has_images:
                self._count_images(self._local.prepare(request))
        except BaseException:
            self.turns.pop()
            self.turn_images.pop()
            raise
        return self._stream(dropped, request)

    def reserve_tokens(self, options: GenerationOptions) -> int:
        return min(options.max_tokens, max(self.model.folder.context_length // 4, 1))

    def _count_images(self, prepared: VisionPrompt | None) -> None:
        """Each image's measured cost (for `_fit`) and, the first time, its budget warning."""
        if prepared is None:
            return
        images = [image for turn in self.turn_images for image in turn]
        for image, tokens, warning in zip(images, prepared.image_tokens, _per_image(prepared, images)):
            if image not in self._image_tokens and warning:
                self._on_notice(warning)
            self._image_tokens[image] = tokens

    def _stream(self, dropped: int, request: ChatRequest) -> Iterator[StreamEvent]:
        yield from self._record(self._local.stream(request), dropped)

    def _turn_stats(self, usage: Usage | None, finish: str | None, dropped: int) -> TurnStats:
        prefill = self._local.last
        completion = usage.completion_tokens if usage else len(self.cache.generated_ids)
        return TurnStats(
            prompt_tokens=prefill.prompt_tokens if prefill else 0,
            reused_tokens=prefill.reused_tokens if prefill else 0,
            appended_ids=prefill.appended_ids if prefill else (),
            completion_tokens=completion, finish_reason=finish, dropped_messages=dropped,
            rewound=prefill.rewound if prefill else False)

    def _fit(self, options: GenerationOptions) -> int:
        """Drop the oldest exchanges (and their images) until the history leaves room for an
        answer. A new turn that cannot fit even alone is an error, and then nothing is dropped.
        An image not sent before counts 0 here: core.generation.vision measures it exactly, then refuses."""
        context = self.model.folder.context_length
        room = context - self.reserve_tokens(options)
        start = 0
        length = self._length(start)
        while len(self.turns) - start > 1 and length > room:
            two = len(self.turns) - start > 2 and self.turns[start + 1]["role"] == "assistant"
            start += 2 if two else 1
            length = self._length(start)
        if length >= context:
            raise PromptTooLongError(length, context)
        if start:
            del self.turns[:start]
            del self.turn_images[:start]
            self._on_notice(f"The context is full: dropped the {start} oldest messages "
                            "(the system prompt is kept).")
        return start

    def _length(self, start: int) -> int:
        """Tokens of the history from turn `start`: its text, plus the images measured so far."""
        from agentic_onnx.core.generation.vision import IMAGE_MARKER

        system = self.messages[:len(self.messages) - len(self.turns)]
        kept = self.turns[start:]
        images = [image for turn in self.turn_images[start:] for image in turn]
        if not images:
            return len(self.cache.encode_prompt(system + kept))
        text = [{**m, "content": str(m.get("content") or "").replace(IMAGE_MARKER, "")} for m in kept]
        return (len(self.cache.encode_prompt(system + text))
                + sum(self._image_tokens.get(image, 0) for image in images))


def _per_image(prepared: VisionPrompt, images: Sequence[ImageInput]) -> list[str | None]:
    """Each image's budget warning, or None (core.generation.vision words them with the image's label)."""
    return [next((w for w in prepared.warnings if w.startswith(f"Image {image.label} ")), None)
            for image in images]


def _saved_message(message: Message, images: tuple[ImageInput, ...]) -> Message:
    """A turn as `/save` writes it: image markers out, the images named by their labels."""
    if not images:
        return message
    from agentic_onnx.core.generation.vision import IMAGE_MARKER

    content = str(message.get("content") or "").replace(IMAGE_MARKER, "")
    return {**message, "content": content, "images": [image.label for image in images]}


def _stats_json(turn: TurnStats) -> dict[str, object]:
    data = asdict(turn)
    del data["appended_ids"], data["new_tokens"]
    data["appended_tokens"] = turn.appended_tokens
    return data
