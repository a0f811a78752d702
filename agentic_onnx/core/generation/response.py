"""A Response iterates a provider's event stream once and measures it, for every consumer.

Timings (monotonic clock):
- `ttft_ms`: from the start of the request (after the model is loaded) to the first visible text
  (or the first piece of a tool call, for a reply that is only a call).
- `first_token_ms`: from the start to the first generated token, shown or not (what llama.cpp and
  Ollama call time to first token); local models report it, cloud streams give the first text.
- `decode_tokens_per_s`: completion tokens after the first, over the time after the first token
  (after the first text when the stream does not say when its first token came).
- `total_s`: from the start of the request to the end of the stream.
`load_s` is set by whoever loaded the model (0 for a cached model).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from agentic_onnx.core.generation.events import (
    Finish,
    FinishReason,
    FirstToken,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)


@dataclass
class Timings:
    load_s: float = 0.0
    ttft_ms: float | None = None
    decode_tokens_per_s: float | None = None
    total_s: float = 0.0
    prompt_tokens_per_s: float | None = None
    first_token_ms: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {
            "load_s": round(self.load_s, 4),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "first_token_ms": None if self.first_token_ms is None else round(self.first_token_ms, 2),
            "decode_tokens_per_s": (
                None if self.decode_tokens_per_s is None else round(self.decode_tokens_per_s, 2)
            ),
            "total_s": round(self.total_s, 4),
        }


@dataclass
class Response:
    """Wraps one stream. Iterate it to consume events as they come; read the results after."""

    events: Iterable[StreamEvent]
    provider: str
    model: str
    execution_provider: str | None = None
    load_s: float = 0.0
    cost_usd: float = 0.0
    chunks: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    tool_call_cut: bool = False  # the reply was a tool call cut off by the token budget
    stop_sequence: str | None = None  # the stop string that ended the answer, if one did
    _calls: dict[str, dict[str, str]] = field(default_factory=dict)
    _started: float | None = None
    _first_token: float | None = None
    _first_text: float | None = None
    _ended: float | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        self._started = time.perf_counter()
        try:
            for event in self.events:
                if isinstance(event, TextDelta):
                    if self._first_text is None:
                        self._first_text = time.perf_counter()
                    self.chunks.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    if self._first_text is None:
                        self._first_text = time.perf_counter()
                    self._add_call_piece(event)
                elif isinstance(event, FirstToken):
                    if self._first_token is None:
                        self._first_token = time.perf_counter()
                elif isinstance(event, Usage):
                    self.usage = event
                elif isinstance(event, Finish):
                    # The stream's own end: bookkeeping that wrappers do after it (the usage
                    # log's write, say) is not generation time.
                    self._ended = time.perf_counter()
                    self.finish_reason = event.reason
                    self.tool_call_cut = event.tool_call_cut
                    self.stop_sequence = event.stop_sequence
                yield event
        finally:
            if self._ended is None:  # an interrupted or failed stream ends here
                self._ended = time.perf_counter()

    def consume(self) -> Response:
        """Run the stream to the end without looking at the events."""
        for _ in self:
            pass
        return self

    def _add_call_piece(self, event: ToolCallDelta) -> None:
        call = self._calls.setdefault(event.id, {"id": event.id, "name": "", "arguments": ""})
        call["name"] = event.name or call["name"]
        call["arguments"] += event.arguments_json_fragment

    @property
    def started_at(self) -> float | None:
        """When the stream was started (time.perf_counter), None before."""
        return self._started

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def tool_calls(self) -> list[dict[str, str]]:
        """The calls the model made, in order: id, name and the arguments' JSON text."""
        return [dict(call) for call in self._calls.values()]

    @property
    def timings(self) -> Timings:
        timings = Timings(load_s=self.load_s)
        if self._started is None:
            return timings
        end = self._ended if self._ended is not None else time.perf_counter()
        timings.total_s = end - self._started
        if self._first_text is not None:
            timings.ttft_ms = (self._first_text - self._started) * 1000.0
        if self._first_token is not None:
            timings.first_token_ms = (self._first_token - self._started) * 1000.0
        first = self._first_token if self._first_token is not None else self._first_text
        if first is not None:
            prefill_s = first - self._started
            if self.usage and self.usage.prompt_tokens and prefill_s > 0:
                timings.prompt_tokens_per_s = self.usage.prompt_tokens / prefill_s
            decode_s = end - first
            decoded_after_first = (self.usage.completion_tokens - 1) if self.usage else 0
            if decoded_after_first > 0 and decode_s > 0:
                timings.decode_tokens_per_s = decoded_after_first / decode_s
        return timings

    def to_json(self) -> dict[str, object]:
        """The `--json` object of `run` (schema in README)."""
        usage = self.usage or Usage(0, 0)
        return {
            "text": self.text,
            "provider": self.provider,
            "model": self.model,
            "execution_provider": self.execution_provider,
            "finish_reason": self.finish_reason,
            "stop_sequence": self.stop_sequence,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
            "timings": self.timings.to_json(),
            "cost_usd": self.cost_usd,
            **({"tool_calls": [tool_call_json(call) for call in self._calls.values()]}
               if self._calls else {}),
        }


def tool_call_json(call: dict[str, str]) -> dict[str, object]:
    """A call for `--json`: arguments as a JSON object; the exact JSON text instead when it
    does not parse or holds a number beyond a double's range (it would print as Infinity)."""
    try:
        arguments: object = json.loads(call["arguments"] or "{}", parse_float=_finite_float)
    except ValueError:
        arguments = call["arguments"]
    return {"id": call["id"], "name": call["name"], "arguments": arguments}


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a double's range")
    return value
