"""From token states to one vector per text: pooling, L2 normalisation, Matryoshka truncation.

Pure numpy, so the tests check it against a transformers forward pass directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POOLINGS = ("mean", "cls")


def pool(hidden: Any, attention_mask: Any, how: str) -> Any:
    """`hidden` [batch, tokens, width], `attention_mask` [batch, tokens] -> [batch, width].

    Mean pooling averages the real tokens only (padding is masked out, so a text's vector does
    not depend on what it was batched with); CLS takes the first token."""
    if how == "cls":
        return hidden[:, 0, :].astype(np.float32)
    if how != "mean":
        raise ValueError(f"unknown pooling {how!r}")
    mask = attention_mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * mask).sum(axis=1)
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    return summed / counts


def l2_normalize(vectors: Any) -> Any:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)  # torch.nn.functional.normalize's epsilon


def shorten(vectors: Any, dimension: int, normalize: bool) -> Any:
    """Keep the first `dimension` components (Matryoshka models are trained for it) and
    normalise again, so the short vector is unit length like the full one."""
    cut = vectors[:, :dimension]
    return l2_normalize(cut) if normalize else cut
