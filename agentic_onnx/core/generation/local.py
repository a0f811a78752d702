"""The one local generation entry: a loaded model answering `ChatRequest`s.

`LocalGeneration` owns what every local front end needs and used to write for itself (the onnx
provider of the router, `chat`, `serve`):
- the dispatch: images (core.generation.vision), tools (core.answers.tools: constrained
  decoding, calls read back), a schema (core.answers.structured's guidance), or plain text;
- the KV caches kept between requests (core.generation.prefix_cache.PrefixCache): one slot per
  conversation (`slots`, within a memory budget: core.generation.kv_budget), each reused only
  within one tenant and never across LoRA adapters; or none (`keep_prefix=False`: one-shot runs
  and benchmarks measure a whole prefill);
- the LoRA adapter a request names, resolved once per name;
- what the stream reports about the prompt: `FirstToken` and `Usage` carry how many prompt
  tokens came from the cache (`cached_tokens`).

Not thread-safe, like the model: one generation at a time per instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.prefix_cache import PrefillStats, PrefixCache
from agentic_onnx.core.generation.events import FirstToken, StreamEvent, Usage
from agentic_onnx.core.generation.request import ChatRequest

if TYPE_CHECKING:
    from agentic_onnx.core.generation.engine import LoadedModel
    from agentic_onnx.core.generation.vision import VisionPrompt


class LocalGeneration:
    """One loaded model, its kept KV caches, one entry for every kind of request."""

    def __init__(self, model: LoadedModel, *, keep_prefix: bool = True,
                 reseed_each_request: bool = True, slots: int = 1,
                 kv_budget_bytes: int | None = None) -> None:
        """`keep_prefix`: reuse the cached prefix of earlier requests (agents resend the whole
        history every turn); `reseed_each_request`: see PrefixCache (a conversation keeps one
        random stream for the whole session); `slots` and `kv_budget_bytes`: how many
        conversations' KV caches are kept, within how many bytes (PrefixCache; one slot: a
        single conversation, as `chat` keeps)."""
        self.model = model
        self.keep_prefix = keep_prefix
        self.cache = PrefixCache(model, reseed_each_request, slots if keep_prefix else 1,
                                 kv_budget_bytes if keep_prefix else None)
        self._adapters: dict[str, Path] = {}
        self._vision: tuple[ChatRequest, VisionPrompt] | None = None

    @property
    def last(self) -> PrefillStats | None:
        """What the last request cost the model before its first new token."""
        return self.cache.last

    def adapter_file(self, name: str) -> Path:
        """The `.onnx_adapter` file a request's adapter names (a name beside the model, or a
        path), checked once per name; AdapterError/AdapterNotFoundError when it cannot be used."""
        if name not in self._adapters:
            from agentic_onnx.core.models.adapters import adapter_for

            self._adapters[name] = adapter_for(self.model.folder, name)
        return self._adapters[name]

    def prepare(self, request: ChatRequest) -> VisionPrompt | None:
        """What may fail before the model runs, done before the stream starts: the adapter is
        found, the dispatch is allowed, images are processed and counted (a prompt that cannot
        fit is refused here). Returns the prepared vision prompt, if the request has images."""
        if request.adapter is not None:
            if request.tools or request.images:
                raise UsageError("A LoRA adapter cannot be combined with tools or images yet.",
                                 "Drop one of them.")
            self.adapter_file(request.adapter)
        if not request.images:
            return None
        if self._vision is None or self._vision[0] is not request:
            from agentic_onnx.core.generation.vision import prepare_vision_prompt

            self._vision = (request, prepare_vision_prompt(self.model, request.messages,
                                                           request.images))
        return self._vision[1]

    def stream(self, request: ChatRequest, tenant: str = "") -> Iterator[StreamEvent]:
        """The request's events (core.generation.events). `tenant`: who may reuse the KV cache
        this request leaves (and hear how much of its prompt was cached); a request reuses only
        its own tenant's slots, so another tenant's request starts from an empty cache."""
        vision = self.prepare(request)
        events = self._vision_stream(request, vision) if vision is not None \
            else self._text_stream(request, tenant)
        return self._with_cached_counts(events)

    def continues(self, request: ChatRequest, tenant: str = "") -> bool:
        """Whether `request` is the next turn of a conversation whose KV cache `tenant` keeps
        here (reusing it saves more than decoding the request in a batch)."""
        if not self.keep_prefix or request.images or request.tools:
            return False
        return self.cache.continues(request.messages, tenant)

    def kv_usage(self) -> dict[str, object]:
        """The kept KV caches: slots used, their bound, megabytes (PrefixCache.usage)."""
        return self.cache.usage()

    def _text_stream(self, request: ChatRequest, tenant: str = "") -> Iterator[StreamEvent]:
        """Tools, a schema or plain text: over the kept generator, or (no prefix kept) over a
        generator sized for this request alone, as a one-shot run has always been."""
        options = request.options
        stream = partial(self.cache.stream, tenant=tenant) if self.keep_prefix \
            else self.model.stream
        if request.tools:
            from agentic_onnx.core.answers.tool_spec import AUTO
            from agentic_onnx.core.answers.tools import stream_with_tools

            return stream_with_tools(self.model, request.messages, options, request.tools,
                                     request.tool_choice or AUTO, stream=stream)
        adapter = self.adapter_file(request.adapter) if request.adapter is not None else None
        guidance = request.response_format.guidance() if request.response_format else None
        return stream(request.messages, options, guidance=guidance, adapter=adapter)

    def _vision_stream(self, request: ChatRequest, vision: VisionPrompt) -> Iterator[StreamEvent]:
        """A request with images runs on a generator of its own (genai feeds a multimodal prompt
        at once, so there is no prefix to keep). Room is made for it first among the kept
        generators (with one slot, the kept one goes, so that two KV caches are never held)."""
        self.cache.make_room(min(vision.prompt_tokens + request.options.max_tokens,
                                 self.model.folder.context_length))
        ids = vision.inputs["input_ids"].as_numpy().reshape(-1)
        self.cache.last = PrefillStats(vision.prompt_tokens, 0, tuple(int(i) for i in ids), False)
        self.cache.generated_ids = []
        guidance = request.response_format.guidance() if request.response_format else None
        return self.model.stream(request.messages, request.options, images=vision,
                                 tools=request.openai_tools() or None, guidance=guidance)

    def _with_cached_counts(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """FirstToken and Usage with the prompt tokens the cache supplied (none without one)."""
        try:
            for event in events:
                prefill = self.cache.last if self.keep_prefix else None
                if isinstance(event, FirstToken):
                    event = FirstToken(prefill.prompt_tokens if prefill else event.prompt_tokens,
                                       prefill.reused_tokens if prefill else 0)
                elif isinstance(event, Usage):
                    event = Usage(event.prompt_tokens, event.completion_tokens,
                                  prefill.reused_tokens if prefill else 0)
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

