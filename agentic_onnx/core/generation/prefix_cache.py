"""KV caches kept between requests: the common prefix of the next prompt is not computed again.

A `PrefixCache` keeps onnxruntime-genai generators (and so their KV caches) for a model: one
*slot* per conversation, up to `slots` of them within a memory budget (core.generation.kv_budget).
Each new prompt is compared, token by token, with what a generator already holds: the common
prefix is kept, the rest is rewound (`rewind_to`) and only the new tokens are fed
(`append_tokens`). In a conversation the new prompt is the chat template applied to the whole
history, so what is appended is exactly the difference between the rendered history prompts:
the end of the last answer and the new user turn. The rest of the pipeline is
`LoadedModel.stream`'s own (EOS, stop strings, usage, finish), so a reply streams the same
events, and a greedy reply equals a fresh generation over the whole history.

Which slot a request runs in (`_choose`), among the slots of its tenant only (a slot belongs to
one tenant; another tenant's is never reused, nor compared with the prompt):
1. the slot that holds its conversation: the one sharing the longest token prefix with the
   prompt, when that prefix holds the slot's last prompt whole (the next turn, or the same turn
   again) or more than half of what the slot holds (rewinding it then discards less than it
   saves);
2. else a new slot, while the count (`slots`) and the byte budget leave room;
3. else the least recently used slot is evicted: its tokens are dropped, except that a slot of
   the same tenant keeps its common prefix with the prompt (with one slot, as `chat` runs, this
   is the single kept generator of old: a new conversation still reuses the system prompt).
The slot's generator is new, not reused, when the request's sampling settings or LoRA adapter
differ from the ones it was made with, or when a seeded sampling request is reseeded.

Used through core.generation.local.LocalGeneration. Not thread-safe, like `LoadedModel`
(`usage` excepted: it reads plain counters, for `serve`'s /health).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.errors import GenerationError
from agentic_onnx.core.generation.engine import LoadedModel, Message
from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.kv_budget import MIB, KVLayout, default_budget_bytes, kv_layout
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


@dataclass(eq=False)
class _Slot:
    """One kept generator: one conversation's KV cache, owned by one tenant."""

    tenant: str
    generator: Any = None
    search: dict[str, Any] | None = None
    adapter: Path | None = None  # part of the cache's identity: never shared across adapters
    fed: int = 0  # the first `fed` tokens of the sequence are in the KV cache
    prompt_tokens: int = 0  # the last prompt it answered
    held: int = 0  # tokens in its sequence (a plain counter: the budget is read without genai)
    used: int = 0  # when it was last used: the least recently used slot is evicted first


class PrefixCache:
    """Generators kept across requests on one model: `slots` of them at most, within
    `budget_bytes` of KV cache (default: a share of the memory available, see
    core.generation.kv_budget; at least one slot is always kept).

    genai 0.18 detail: the last token of a generation (unless it is EOS, which genai does not
    add to the sequence) is sampled but not yet fed to the model, and appending right after it
    gives logits that differ from a fresh prefill (measured: up to 6.6 on tiny-qwen2). So only
    tokens known to be fed are kept (`fed`); that last token is rewound and appended again with
    the new ones, which is exact.
    """

    def __init__(self, model: LoadedModel, reseed_each_request: bool = True, slots: int = 1,
                 budget_bytes: int | None = None) -> None:
        """`reseed_each_request`: a seeded sampling request gets a new generator (and so the
        same answer every time, as `serve` promises); a conversation keeps one random stream
        for the whole session instead, so a seeded session replays as a whole. `slots`: how
        many conversations are kept (one: a single kept generator, as `chat` needs)."""
        self.model = model
        self.reseed_each_request = reseed_each_request
        self.max_slots = max(1, slots)
        budgeted = self.max_slots > 1 or budget_bytes is not None
        self.layout: KVLayout | None = kv_layout(model) if budgeted else None
        if budget_bytes is None and self.max_slots > 1:
            budget_bytes = default_budget_bytes(model.execution_provider,
                                                device_id=getattr(model, "device_id", None))
        self.budget_bytes = budget_bytes
        self.last: PrefillStats | None = None
        self.generated_ids: list[int] = []  # the tokens of the last generation, EOS included
        self._slots: list[_Slot] = []
        self._clock = 0
        self._memo: tuple[str, list[int]] | None = None  # the last prompt text and its tokens
        self._view = _CachedModel(**model.__dict__, cache=self)

    def stream(self, messages: Sequence[Message], options: GenerationOptions,
               tenant: str = "", **extra: Any) -> Iterator[StreamEvent]:
        """`LoadedModel.stream` over a kept generator of `tenant`: the same events, less
        prefill. `extra` goes to `LoadedModel.stream` as it is (guidance, tools)."""
        view = _CachedModel(**self.model.__dict__, cache=self, tenant=tenant)
        return view.stream(messages, options, **extra)

    def encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        """The prompt tokens of `messages` (remembered, so `stream` does not encode them twice)."""
        return self._view.encode(self._view.render_prompt(messages))

    def continues(self, messages: Sequence[Message], tenant: str) -> bool:
        """Whether `messages`' prompt goes on from the whole last prompt of a kept slot of
        `tenant` (a conversation's next turn; a shared system prompt is not one). Encodes
        nothing when the tenant keeps no slot."""
        slots = [slot for slot in self._slots if slot.tenant == tenant and slot.prompt_tokens]
        if not slots:
            return False
        prompt = self.encode_prompt(messages)
        return any(common_prefix_length(self._sequence(slot), prompt) >= slot.prompt_tokens
                   for slot in slots)

    def reset(self) -> None:
        """Forget every slot; the next request starts a new generator."""
        for slot in list(self._slots):
            self._evict(slot)

    def make_room(self, tokens: int) -> None:
        """Evict the least recently used slots until a generator of its own for `tokens` (a
        request with a grammar or images: its KV cache is allocated for `tokens`) fits in the
        budget beside the kept ones. With one slot, the kept generator goes, so that two KV
        caches are never held at once (as `chat` has always run)."""
        cost = self.layout.bytes_per_token * tokens if self.layout is not None else 0
        while self._slots and (self.max_slots == 1 or not self._fits(cost)):
            self._evict(min(self._slots, key=lambda slot: slot.used))

    @property
    def capacity(self) -> int:
        """How many slots may be kept: `slots`, fewer when the budget holds fewer preallocated
        KV caches (never fewer than one)."""
        layout, budget = self.layout, self.budget_bytes
        if layout is None or budget is None or not layout.preallocated:
            return self.max_slots
        return max(1, min(self.max_slots, budget // max(layout.slot_bytes(0), 1)))

    def usage(self) -> dict[str, Any]:
        """The slots in use and their bounds (what `serve`'s /health shows): `slots`,
        `max_slots`, and with a known layout `mb` (their KV caches) and `budget_mb`."""
        slots = list(self._slots)
        data: dict[str, Any] = {"slots": len(slots), "max_slots": self.capacity}
        if self.layout is not None:
            data["mb"] = round(sum(self.layout.slot_bytes(s.held) for s in slots) / MIB, 1)
            if self.budget_bytes is not None:
                data["budget_mb"] = round(self.budget_bytes / MIB, 1)
        return data

    def generate_tokens(self, prompt_tokens: Sequence[int], options: GenerationOptions,
                        adapter: Path | None = None, tenant: str = "") -> Iterator[int]:
        """`LoadedModel.generate_tokens`, reusing the cached prefix of `prompt_tokens` kept in
        one of `tenant`'s slots (only one computed with the same LoRA `adapter`)."""
        slot = self._prefill(list(prompt_tokens), options, adapter, tenant)
        generator = slot.generator
        self.generated_ids = []
        while not generator.is_done():
            before = int(generator.token_count())
            generator.generate_next_token()
            slot.fed = before  # set after the call: an interruption can only make it smaller
            slot.held = before + 1
            token = int(generator.get_next_tokens()[0])
            self.generated_ids.append(token)
            yield token

    def _prefill(self, prompt: list[int], options: GenerationOptions,
                 adapter: Path | None, tenant: str) -> _Slot:
        context = self.model.folder.context_length
        search = self.model.search_options(context, options)
        reseed = self.reseed_each_request and not options.greedy and options.seed is not None
        expected = min(len(prompt) + options.max_tokens, context)
        slot, cached = self._choose(prompt, tenant, expected)
        self._clock += 1
        slot.used = self._clock
        if slot.generator is None or search != slot.search or reseed or adapter != slot.adapter:
            try:
                self._new_generator(slot, search, adapter)
            except BaseException:
                self._evict(slot)  # never a slot without its generator
                raise
            cached = []
        keep = min(common_prefix_length(cached, prompt), slot.fed, len(prompt) - 1)
        try:
            if keep < len(cached):
                slot.generator.rewind_to(keep)
            slot.generator.append_tokens(prompt[keep:])
        except Exception as error:  # noqa: BLE001 - genai raises RuntimeError with its reason
            self._evict(slot)
            raise GenerationError(f"onnxruntime-genai could not extend the KV cache: {error}",
                                  "Start a new conversation (/clear) or restart the command.") from None
        slot.fed = slot.held = slot.prompt_tokens = len(prompt)
        self.last = PrefillStats(len(prompt), keep, tuple(prompt[keep:]), keep < len(cached))
        self._fit_budget(slot)
        return slot

    def _choose(self, prompt: list[int], tenant: str, expected: int) -> tuple[_Slot, list[int]]:
        """The slot `prompt` runs in, and the tokens that slot holds (see the module's notes)."""
        best: tuple[_Slot, list[int]] | None = None
        best_match = 0
        for slot in sorted((s for s in self._slots if s.tenant == tenant), key=lambda s: -s.used):
            cached = self._sequence(slot)
            match = common_prefix_length(cached, prompt)
            if match > best_match and (match >= slot.prompt_tokens or 2 * match > len(cached)):
                best, best_match = (slot, cached), match
        if best is not None:
            return best
        cost = self.layout.slot_bytes(expected) if self.layout is not None else 0
        if self._room(cost):
            self._slots.append(_Slot(tenant))
            return self._slots[-1], []
        victim = min(self._slots, key=lambda slot: slot.used)
        if victim.tenant == tenant:
            return victim, self._sequence(victim)
        # Another tenant's slot: its generator is recycled, rewound to nothing (`fed` 0: none of
        # its tokens is reused), because allocating a whole-context KV cache anew costs seconds
        # on a large model (measured: 4.4-7.2 s for 4,096 tokens of the Phi-3-mini shape).
        cached = self._sequence(victim)
        self._slots.remove(victim)
        self._slots.append(_Slot(tenant, victim.generator, victim.search, victim.adapter))
        return self._slots[-1], cached

    def _room(self, cost: int) -> bool:
        """Whether one more slot, of `cost` bytes, fits beside the kept ones."""
        return not self._slots or (len(self._slots) < self.max_slots and self._fits(cost))

    def _fits(self, cost: int) -> bool:
        return self.budget_bytes is None or self._bytes() + cost <= self.budget_bytes

    def _bytes(self) -> int:
        layout = self.layout
        return sum(layout.slot_bytes(slot.held) for slot in self._slots) if layout else 0

    def _fit_budget(self, current: _Slot) -> None:
        """Evict the least recently used other slots while the kept ones exceed the budget
        (slots whose KV cache grows with their tokens)."""
        while self.budget_bytes is not None and len(self._slots) > 1 \
                and self._bytes() > self.budget_bytes:
            self._evict(min((s for s in self._slots if s is not current), key=lambda s: s.used))

    def _evict(self, slot: _Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.generator, slot.search, slot.fed, slot.held = None, None, 0, 0

    def _new_generator(self, slot: _Slot, search: dict[str, Any],
                       adapter: Path | None = None) -> None:
        import onnxruntime_genai as og

        slot.generator = None  # the old KV cache goes before the new one is allocated
        params = og.GeneratorParams(self.model.og_model)
        params.set_search_options(**search)
        slot.generator = og.Generator(self.model.og_model, params)
        slot.search, slot.fed, slot.held, slot.adapter = search, 0, 0, None
        if adapter is not None:
            self.model.adapters.activate(self.model.og_model, slot.generator, adapter)
            slot.adapter = adapter

    @staticmethod
    def _sequence(slot: _Slot) -> list[int]:
        if slot.generator is None or not int(slot.generator.token_count()):
            return []
        return [int(token) for token in slot.generator.get_sequence(0)]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


@dataclass
class _CachedModel(LoadedModel):
    """The model as `PrefixCache` runs it for one tenant: `stream` unchanged, the decode loop
    on the cache."""

    cache: PrefixCache | None = field(default=None, repr=False)
    tenant: str = ""

    def encode(self, text: str) -> list[int]:
        assert self.cache is not None
        memo = self.cache._memo  # noqa: SLF001 - shared by the views of one cache
        if memo is None or memo[0] != text:
            memo = self.cache._memo = (text, super().encode(text))  # noqa: SLF001
        return list(memo[1])

    def generate_tokens(self, prompt_tokens: Sequence[int], options: GenerationOptions,
                        guidance: Any = None, adapter: Path | None = None) -> Iterator[int]:
        assert self.cache is not None
        if guidance is not None:  # a grammar is set when a generator is made: no reuse
            self.cache.make_room(min(len(prompt_tokens) + options.max_tokens,
                                     self.folder.context_length))
            self.cache.last = PrefillStats(len(prompt_tokens), 0, tuple(prompt_tokens), False)
            self.cache.generated_ids = []
            return super().generate_tokens(prompt_tokens, options, guidance, adapter)
        return self.cache.generate_tokens(prompt_tokens, options, adapter, self.tenant)
