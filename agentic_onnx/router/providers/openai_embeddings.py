"""OpenAI's embeddings wire format: the request body, and a strict reading of the answer.

What a server sends back is not trusted: `data` must be a list of objects, one per input,
whose `index` values (when given) are the inputs' positions, each with a non-empty list of
finite numbers, all of one length (the requested `dimensions`, when given). Anything else is a
one-line ProviderError that says what was wrong, never a traceback or a silently short result.
Rows are returned in input order, sorted by `index` (a server may send them in any order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentic_onnx.router.errors import ProviderError
from agentic_onnx.router.providers.http import HttpTarget, error_detail

MAX_INPUTS_PER_REQUEST = 2048  # OpenAI's limit; `serve` has the same one


@dataclass(frozen=True)
class EmbeddingsReply:
    """The vectors in input order, and the prompt tokens the server reported (None: none)."""

    vectors: list[list[float]]
    prompt_tokens: int | None


def embeddings_payload(texts: Sequence[str], model: str, dimensions: int | None = None,
                       input_type: str | None = None) -> dict[str, Any]:
    """The request body. `input_type` is agentic-onnx serve's extension (which prefix a model
    uses); it is sent only when asked for, since other servers may reject unknown fields."""
    payload: dict[str, Any] = {"model": model, "input": list(texts),
                               "encoding_format": "float"}
    if dimensions is not None:
        payload["dimensions"] = dimensions
    if input_type is not None:
        payload["input_type"] = input_type
    return payload


def parse_embeddings(body: Any, count: int, target: HttpTarget,
                     dimensions: int | None = None) -> EmbeddingsReply:
    """The answer to a request for `count` inputs, checked (see the module docstring)."""
    if isinstance(body, dict) and body.get("error"):
        detail = error_detail(json.dumps({"error": body["error"]})) or "no details"
        raise ProviderError(target.provider, f"{target.label} returned an error: {detail}",
                            "Check the model name: it must be an embedding model.")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise _invalid(target, "`data` is not a list")
    if len(data) != count:
        raise _invalid(target, f"{len(data)} embeddings for {count} inputs")
    rows: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        index = _index(item, position, count, target)
        if rows[index] is not None:
            raise _invalid(target, f"data[{position}]: index {index} appears twice")
        rows[index] = _vector(item, position, target)
    vectors = [row for row in rows if row is not None]
    lengths = sorted({len(row) for row in vectors})
    if len(lengths) > 1:
        raise _invalid(target, f"vectors of different lengths ({lengths[0]} to {lengths[-1]})")
    if dimensions is not None and lengths and lengths[0] != dimensions:
        raise _invalid(target, f"{lengths[0]} dimensions where {dimensions} were asked for")
    return EmbeddingsReply(vectors, _prompt_tokens(body.get("usage")))


def _index(item: Any, position: int, count: int, target: HttpTarget) -> int:
    if not isinstance(item, dict):
        raise _invalid(target, f"data[{position}] is not an object")
    index = item.get("index", position)
    if type(index) is not int or not 0 <= index < count:
        raise _invalid(target, f"data[{position}].index is not an input's position")
    return index


def _vector(item: dict[str, Any], position: int, target: HttpTarget) -> list[float]:
    vector = item.get("embedding")
    if not isinstance(vector, list) or not vector:
        raise _invalid(target, f"data[{position}].embedding is not a list of numbers "
                       "(asked for encoding_format float)")
    if not all(map(_finite_number, vector)):
        raise _invalid(target, f"data[{position}].embedding holds something other than "
                       "finite numbers")
    return [float(x) for x in vector]


def _finite_number(value: Any) -> bool:
    """A float that is not NaN or infinite, or an int a float can hold (`true` is no number:
    bool is an int subclass, hence the exact type checks)."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -1e308 < value < 1e308


def _prompt_tokens(usage: Any) -> int | None:
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if type(tokens) is int and tokens >= 0 else None


def _invalid(target: HttpTarget, why: str) -> ProviderError:
    return ProviderError(target.provider, f"{target.label} sent an invalid embeddings "
                         f"response: {why}.", "Check that the model is an embedding model and "
                         "that baseUrl points at an OpenAI-compatible API.")
