"""The typed events every provider yields: the one streaming contract.

A stream is any number of `TextDelta`s (and, from providers that call tools, `ToolCallDelta`s),
then exactly one `Usage` and one `Finish`; local models also send one `FirstToken` before them.
`run`, `chat`, `serve` and `benchmark` consume streams through `Response`, so timings and usage
mean the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text for the user, safe to show: never half a character, never part of a stop string."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of the request, as the model's own tokenizer counts them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt, reused from a KV cache kept from earlier requests


@dataclass(frozen=True, slots=True)
class Finish:
    """Why generation ended: `stop` (end-of-sequence token or a stop string), `length`, or
    `tool_calls` (the model asks the caller to run the tools it called). `tool_call_cut`: the
    reply was a tool call that the token budget cut off (its raw text is not passed on).
    `stop_sequence`: the stop string that ended the reply (reason `stop`), if one did."""

    reason: FinishReason
    tool_call_cut: bool = False
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The model produced its first token, shown or not (a tool call's, a multibyte character's
    first byte): the time to first token, and where decoding starts. Local models send it;
    consumers that only show text ignore it. `prompt_tokens`: the prompt as the model saw it;
    `cached_tokens`: how many of those came from a KV cache kept from earlier requests."""

    prompt_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: the first piece of a call carries its `id` and `name`; later
    pieces of the same call repeat the `id` and carry the next fragment of its JSON arguments
    (concatenated, the fragments are the arguments object)."""

    id: str
    name: str | None
    arguments_json_fragment: str


StreamEvent = Union[TextDelta, ToolCallDelta, Usage, Finish, FirstToken]
