"""Generation that keeps the KV cache between requests: `chat` turns and `serve` requests.

A `PrefixCache` holds one onnxruntime-genai generator (and so its KV cache) for a model. Each
new prompt is compared, token by token, with what the generator already holds: the common
prefix is kept, the rest is rewound (`rewind_to`) and only the new tokens are fed
(`append_tokens`). In a conversation the new prompt is the chat template applied to the whole
history, so what is appended is exactly the difference between the rendered history prompts:
the end of the last answer and the new user turn. The rest of the pipeline is
`LoadedModel.stream`'s own (EOS, stop strings, usage, finish), so a reply streams the same
events, and a greedy reply equals a fresh generation over the whole history.

A `Conversation` adds the history: it drops the oldest turns (never the system prompt) when the
context fills, and says so. A turn may carry images (core.generation.vision): while the history holds one,
each turn runs the whole history through the model's multimodal processor with a new generator
(genai feeds a multimodal prompt all at once, so there is no prefix to keep), and the kept
generator is reset.

Not thread-safe, like `LoadedModel`: one generation at a time per cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.generation.engine import LoadedModel, Message
from agentic_onnx.core.errors import GenerationError, PromptTooLongError
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, Usage
from agentic_onnx.core.generation.options import GenerationOptions

if TYPE_CHECKING:
    from pathlib import Path

    from agentic_onnx.core.generation.vision import ImageInput, VisionPrompt


@dataclass(frozen=True)
class PrefillStats:
    """What one request cost the model before its first new token."""

    prompt_tokens: int  # the whole prompt, as the model sees it
    reused_tokens: int  # kept in the KV cache from earlier requests, not computed again
    appended_ids: tuple[int, ...]  # fed to the model for this request
    rewound: bool  # the cache was cut back: tokens this prompt does not continue, or the unfed last one


class PrefixCache:
    """One genai generator kept across requests on one model.

    genai 0.18 detail: the last token of a generation (unless it is EOS, which genai does not
    add to the sequence) is sampled but not yet fed to the model, and appending right after it
    gives logits that differ from a fresh prefill (measured: up to 6.6 on tiny-qwen2). So only
    tokens known to be fed are kept (`_fed`); that last token is rewound and appended again with
    the new ones, which is exact.
    """

    def __init__(self, model: LoadedModel, reseed_each_request: bool = True) -> None:
        """`reseed_each_request`: a seeded sampling request gets a new generator (and so the
        same answer every time, as `serve` promises); a conversation keeps one random stream
        for the whole session instead, so a seeded session replays as a whole."""
        self.model = model
        self.reseed_each_request = reseed_each_request
        self.last: PrefillStats | None = None
        self.generated_ids: list[int] = []  # the tokens of the last generation, EOS included
        self._generator: Any = None
        self._search: dict[str, Any] | None = None
        self._adapter: Path | None = None  # part of the cache's identity: never shared across adapters
        self._fed = 0  # the first `_fed` tokens of the sequence are in the KV cache
        self._view = _CachedModel(**model.__dict__, cache=self)

    def stream(self, messages: Sequence[Message], options: GenerationOptions,
               **extra: Any) -> Iterator[StreamEvent]:
        """`LoadedModel.stream` over the cached generator: the same events, less prefill.
        `extra` goes to `LoadedModel.stream` as it is (guidance, tools)."""
        return self._view.stream(messages, options, **extra)

    def encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        """The prompt tokens of `messages` (remembered, so `stream` does not encode them twice)."""
        return self._view.encode(self._view.render_prompt(messages))

    def reset(self) -> None:
        """Forget the cache; the next request starts a new generator."""
        self._generator, self._search, self._fed = None, None, 0

    @property
    def cached_tokens(self) -> int:
        return int(self._generator.token_count()) if self._generator is not None else 0

    def generate_tokens(self, prompt_tokens: Sequence[int], options: GenerationOptions,
                        adapter: Path | None = None) -> Iterator[int]:
        """`LoadedModel.generate_tokens`, reusing the cached prefix of `prompt_tokens` (only
        when the cache was computed with the same LoRA `adapter`)."""
        generator = self._prefill(list(prompt_tokens), options, adapter)
        self.generated_ids = []
        while not generator.is_done():
            before = int(generator.token_count())
            generator.generate_next_token()
            self._fed = before  # set after the call: an interruption can only make it smaller
            token = int(generator.get_next_tokens()[0])
            self.generated_ids.append(token)
            yield token

    def _prefill(self, prompt: list[int], options: GenerationOptions,
                 adapter: Path | None = None) -> Any:
        search = self.model.search_options(self.model.folder.context_length, options)
        reseed = self.reseed_each_request and not options.greedy and options.seed is not None
        if self._generator is None or search != self._search or reseed or adapter != self._adapter:
            self._new_generator(search, adapter)
        cached = self._sequence()
        keep = min(common_prefix_length(cached, prompt), self._fed, len(prompt) - 1)
        try:
            if keep < len(cached):
                self._generator.rewind_to(keep)
            self._generator.append_tokens(prompt[keep:])
        except Exception as error:  # noqa: BLE001 - genai raises RuntimeError with its reason
            self.reset()
            raise GenerationError(f"onnxruntime-genai could not extend the KV cache: {error}",
                                  "Start a new conversation (/clear) or restart the command.") from None
        self._fed = len(prompt)
        self.last = PrefillStats(len(prompt), keep, tuple(prompt[keep:]), keep < len(cached))
        return self._generator

    def _new_generator(self, search: dict[str, Any], adapter: Path | None = None) -> None:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model.og_model)
        params.set_search_options(**search)
        self._generator = og.Generator(self.model.og_model, params)
        self._search, self._fed, self._adapter = search, 0, None
        if adapter is not None:
            self.model.adapters.activate(self.model.og_model, self._generator, adapter)
            self._adapter = adapter

    def _sequence(self) -> list[int]:
        if not self.cached_tokens:
            return []
        return [int(token) for token in self._generator.get_sequence(0)]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


@dataclass
class _CachedModel(LoadedModel):
    """The model as `PrefixCache` runs it: `stream` unchanged, the decode loop on the cache."""

    cache: PrefixCache | None = field(default=None, repr=False)
    _memo: tuple[str, list[int]] | None = field(default=None, repr=False)

    def encode(self, text: str) -> list[int]:
        if self._memo is None or self._memo[0] != text:
            self._memo = (text, super().encode(text))
        return list(self._memo[1])

    def generate_tokens(self, prompt_tokens: Sequence[int], options: GenerationOptions,
                        guidance: Any = None, adapter: Path | None = None) -> Iterator[int]:
        assert self.cache is not None
        if guidance is not None:  # a grammar is set when a generator is made: no reuse
            self.cache.reset()
            self.cache.last = PrefillStats(len(prompt_tokens), 0, tuple(prompt_tokens), False)
            self.cache.generated_ids = []
            return super().generate_tokens(prompt_tokens, options, guidance, adapter)
        return self.cache.generate_tokens(prompt_tokens, options, adapter)


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


class Conversation:
    """A multi-turn chat with one model; the KV cache is kept between turns.

    When the history no longer leaves room for an answer (`reserve_tokens`: the smaller of
    `max_tokens` and a quarter of the context), the oldest exchanges are dropped, the system
    prompt is kept, and `on_notice` is told.
    """

    def __init__(self, model: LoadedModel, system: str | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 adapter: Path | None = None) -> None:
        self.model = model
        self.adapter = adapter  # a LoRA adapter file (core.models.adapters) used for every turn
        self.system = system or None
        self.turns: list[Message] = []
        self.turn_images: list[tuple[ImageInput, ...]] = []  # one entry per turn, () for most
        self.history: list[TurnStats] = []
        self._image_tokens: dict[ImageInput, int] = {}  # measured cost of images already sent
        self._cache = PrefixCache(model, reseed_each_request=False)
        self._on_notice = on_notice or (lambda message: None)

    @property
    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns

    @property
    def last(self) -> TurnStats | None:
        return self.history[-1] if self.history else None

    @property
    def cache(self) -> PrefixCache:
        return self._cache

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
            vision = self._prepare_vision() if self.has_images else None
        except BaseException:
            self.turns.pop()
            self.turn_images.pop()
            raise
        return self._stream(dropped, options, vision)

    @property
    def has_images(self) -> bool:
        return any(self.turn_images)

    def clear(self) -> None:
        """Forget the turns, keep the system prompt (and the KV cache, whose prefix still fits)."""
        self.turns.clear()
        self.turn_images.clear()

    def set_system(self, system: str | None) -> None:
        self.system = system or None

    def reserve_tokens(self, options: GenerationOptions) -> int:
        return min(options.max_tokens, max(self.model.folder.context_length // 4, 1))

    def to_json(self) -> dict[str, object]:
        """The transcript `/save` writes."""
        system = self.messages[:len(self.messages) - len(self.turns)]
        messages = system + [_saved_message(turn, images)
                             for turn, images in zip(self.turns, self.turn_images)]
        return {"model": self.model.folder.name, "system": self.system,
                "messages": messages, "turns": [_stats_json(turn) for turn in self.history]}

    def _prepare_vision(self) -> VisionPrompt:
        """The whole history and its images, processed and counted (core.generation.vision); the kept
        generator is reset, since a multimodal prompt is fed in one go."""
        from agentic_onnx.core.generation.vision import prepare_vision_prompt

        images = [image for turn in self.turn_images for image in turn]
        prepared = prepare_vision_prompt(self.model, self.messages, images)
        for image, tokens, warning in zip(images, prepared.image_tokens, _per_image(prepared, images)):
            if image not in self._image_tokens and warning:
                self._on_notice(warning)
            self._image_tokens[image] = tokens
        self._cache.reset()
        ids = prepared.inputs["input_ids"].as_numpy().reshape(-1)
        self._cache.last = PrefillStats(prepared.prompt_tokens, 0, tuple(int(i) for i in ids), False)
        self._cache.generated_ids = []
        return prepared

    def _stream(self, dropped: int, options: GenerationOptions,
                vision: VisionPrompt | None = None) -> Iterator[StreamEvent]:
        chunks: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        started = False
        events = (self.model.stream(self.messages, options, images=vision, adapter=self.adapter)
                  if vision is not None
                  else self._cache.stream(self.messages, options, adapter=self.adapter))
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
        prefill = self._cache.last
        completion = usage.completion_tokens if usage else len(self._cache.generated_ids)
        self.history.append(TurnStats(
            prompt_tokens=prefill.prompt_tokens if prefill else 0,
            reused_tokens=prefill.reused_tokens if prefill else 0,
            appended_ids=prefill.appended_ids if prefill else (),
            completion_tokens=completion, finish_reason=finish, dropped_messages=dropped,
            rewound=prefill.rewound if prefill else False))

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
            return len(self._cache.encode_prompt(system + kept))
        text = [{**m, "content": str(m.get("content") or "").replace(IMAGE_MARKER, "")} for m in kept]
        return (len(self._cache.encode_prompt(system + text))
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
    data["appended_tokens"] = len(data.pop("appended_ids"))
    return data
