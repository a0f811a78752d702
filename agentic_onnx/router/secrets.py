"""API keys are secrets: remembered here when loaded, scrubbed from every message we emit."""

from __future__ import annotations

import re

_SECRETS: set[str] = set()
MASK = "***"
# Minimum length of a value we treat as a key: shorter values would mask ordinary words.
_MIN_SECRET_LENGTH = 8
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-.]{8,})")


def register_secret(value: str | None) -> None:
    """Remember `value` so that `redact` removes it from any text."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered key, and anything shaped like a key, replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(MASK, text)
