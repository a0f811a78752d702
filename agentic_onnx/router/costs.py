"""Prices per million tokens (the data file `agentic_onnx/data/prices.json`) and cost arithmetic.

A local provider (onnx, or an openai endpoint marked local) costs $0. A cloud model missing from
the table has an unknown cost (None), never a made-up one. OpenRouter reports the real charge in
its last chunk; when a stream carries one, that figure wins over the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from agentic_onnx.core.generation.events import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """USD per million input and output tokens; `quality` is the table's 1-5 tier."""

    input: float
    output: float
    quality: int = 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / TOKENS_PER_PRICE_UNIT

    @property
    def blended(self) -> float:
        """One number to sort by: the mean of input and output prices."""
        return (self.input + self.output) / 2


FREE = ModelPrice(0.0, 0.0, 1)


@lru_cache(maxsize=1)
def price_table() -> dict[str, dict[str, ModelPrice]]:
    text = resources.files("agentic_onnx").joinpath("data", "prices.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return {
        provider: {model: ModelPrice(float(p["input"]), float(p["output"]), int(p.get("quality", 0)))
                   for model, p in models.items()}
        for provider, models in data["providers"].items()
    }


def lookup_price(kind: str, model: str, overrides: dict[str, ModelPrice] | None = None,
                 *, local: bool = False) -> ModelPrice | None:
    """The price of `model` on a provider of type `kind`: overrides first, then the table, by
    exact id or the longest prefix; `*` matches any model. None when unknown."""
    if local:
        return FREE
    for table in (overrides or {}, price_table().get(kind, {})):
        if model in table:
            return table[model]
        prefixes = [key for key in table if key != "*" and model.startswith(key)]
        if prefixes:
            return table[max(prefixes, key=len)]
        if "*" in table:
            return table["*"]
    return None


def cost_usd(price: ModelPrice | None, usage: Usage | None) -> float | None:
    """What a request cost, rounded to a millionth of a dollar; None when the price is unknown."""
    if price is None:
        return None
    if usage is None:
        return 0.0
    return round(price.cost(usage.prompt_tokens, usage.completion_tokens), 6)
