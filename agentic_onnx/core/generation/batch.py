"""Several plain requests decoded together: one genai generator with `batch_size` N.

On the CPU a decode step reads every weight once whatever the batch, so N sequences stepped
together cost little more than one (measured on the Phi-3-mini shape: docs/performance.md).
genai 0.18's continuous-batching `og.Engine` is slower than one request at a time on the CPU,
so this is the static kind: the prompts are padded on the right with the model's pad token
(genai masks those; left padding changes the answers), every step decodes all sequences, and
each request's reply ends on its own (EOS, a stop string, its max_tokens) while the others go
on. Greedy replies equal the same requests decoded alone (tests/test_batch.py checks it token
for token on the fixtures).

Which requests may share a batch: plain text (no tools, schema, images or adapter: those need
their own generator), greedy or unseeded sampling with the same settings, a prompt without the
pad token in it, and room after the longest prompt for each reply to grow as long as it would
alone (its max_tokens, or up to the context).
Batched requests neither use nor leave a kept KV cache (core.generation.prefix_cache).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.request import ChatRequest

if TYPE_CHECKING:
    from agentic_onnx.core.generation.engine import LoadedModel


# Per execution provider, by measurement (docs/performance.md): the CPU gains; the GPU EPs are
# not measured yet, so they keep one request at a time.
DEFAULT_BATCH_SIZES = {"cpu": 4}


def default_batch_size(execution_provider: str) -> int:
    return DEFAULT_BATCH_SIZES.get(execution_provider, 1)


def batchable(request: ChatRequest) -> bool:
    """A plain request whose sampling a shared generator can do (greedy, or unseeded)."""
    return not (request.tools or request.response_format is not None or request.images
                or request.adapter is not None) and \
        (request.options.greedy or request.options.seed is None)


def batch_key(request: ChatRequest) -> tuple[Any, ...]:
    """Requests with equal keys may share a generator (its search options)."""
    options = request.options
    if options.greedy:
        return ("greedy",)
    return ("sample", options.temperature, options.top_p, options.top_k)


class Batch:
    """The prompts of a batch, padded, and one generator stepping them together. `streams()`
    gives each request's event iterator; they may be consumed in any order (each keeps the
    tokens decoded ahead of it), and one that is closed stops taking tokens."""

    def __init__(self, model: LoadedModel, requests: Sequence[ChatRequest],
                 prompts: Sequence[list[int]], pad_token: int) -> None:
        self.model, self.requests = model, list(requests)
        self.prompts = [list(prompt) for prompt in prompts]
        self.pad_token = pad_token
        self.width = max(map(len, self.prompts))
        self.context = model.folder.context_length
        self.max_length = min(self.width + max(r.options.max_tokens for r in self.requests),
                              self.context)
        self._queues: list[deque[int]] = [deque() for _ in self.requests]
        self._active = set(range(len(self.requests)))
        self._generator: Any = None
        self._done = False

    def streams(self) -> list[Iterator[StreamEvent]]:
        return [self._events(index) for index in range(len(self.requests))]

    def _events(self, index: int) -> Iterator[StreamEvent]:
        from agentic_onnx.core.generation.engine import ReplyEvents

        request = self.requests[index]
        prompt_length = len(self.prompts[index])
        reply = ReplyEvents(self.model, prompt_length,
                            min(prompt_length + request.options.max_tokens, self.context),
                            request.options)
        try:
            while not reply.done:
                token = self._next(index)
                if token is None:
                    break
                yield from reply.feed(token)
            yield from reply.finish()
        finally:
            self._active.discard(index)
            self._queues[index].clear()
            if not self._active:
                self._generator = None  # the batch's KV cache goes as soon as all are done

    def _next(self, index: int) -> int | None:
        """Sequence `index`'s next token: decoded earlier for it, or one more step now."""
        queue = self._queues[index]
        if not queue:
            if self._done:
                return None
            self._step()
            if not queue:
                return None
        return queue.popleft()

    def _step(self) -> None:
        generator = self._generator or self._start()
        if generator.is_done():
            self._done = True
            return
        generator.generate_next_token()
        tokens = generator.get_next_tokens()
        for index in self._active:
            self._queues[index].append(int(tokens[index]))

    def _start(self) -> Any:
        import numpy as np
        import onnxruntime_genai as og

        self.model.bind_device()
        first = self.requests[0].options
        params = og.GeneratorParams(self.model.og_model)
        params.set_search_options(batch_size=len(self.requests),
                                  **self.model.search_options(self.max_length, first))
        self._generator = og.Generator(self.model.og_model, params)
        rows = [prompt + [self.pad_token] * (self.width - len(prompt)) for prompt in self.prompts]
        self._generator.append_tokens(np.array(rows, dtype=np.int32))
        return self._generator


def plan_batch(model: LoadedModel, requests: Sequence[ChatRequest]) -> Batch | None:
    """A Batch of `requests` (each `batchable`, with one `batch_key`), or None when they cannot
    share a generator: no pad token, a prompt holding it, or no room in the context."""
    pad = model.folder.pad_token_id
    if pad is None or len(requests) < 2:
        return None
    prompts = [model.encode(model.render_prompt(request.messages)) for request in requests]
    width, context = max(map(len, prompts)), model.folder.context_length
    if width >= context or any(pad in prompt for prompt in prompts):
        return None
    # each reply must be able to grow as long as it would alone (the padding takes context)
    if any(min(request.options.max_tokens, context - len(prompt)) > context - width
           for request, prompt in zip(requests, prompts)):
        return None
    return Batch(model, requests, prompts, pad)
