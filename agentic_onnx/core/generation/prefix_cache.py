"""A KV cache kept between requests: the common prefix of the next prompt is not computed again.

A `PrefixCache` holds one onnxruntime-genai generator (and so its KV cache) for a model. Each
new prompt is compared, token by token, with what the generator already holds: the common
prefix is kept, the rest is rewound (`rewind_to`) and only the new tokens are fed
(`append_tokens`). In a conversation the new prompt is the chat template applied to the whole
history, so what is appended is exactly the difference between the rendered history prompts:
the end of the last answer and the new user turn. The rest of the pipeline is
`LoadedModel.stream`'s own (EOS, stop strings, usage, finish), so a reply streams the same
events, and a greedy reply equals a fresh generation over the whole history.

Used through core.generation.local.LocalGeneration. Not thread-safe, like `LoadedModel`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.errors import GenerationError
from agentic_onnx.core.generation.engine import LoadedModel, Message
from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.options import GenerationOptions

if TYPE_CHECKING:
    from pathlib import Path


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
