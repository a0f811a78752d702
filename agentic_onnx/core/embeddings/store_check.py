"""What the store checks for an embedding model (the download is the chat models' download:
resumable, verified, atomic; only these checks differ). Kept here so the store code does not
need to know how an encoder folder looks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agentic_onnx.core.embeddings.folder import EmbeddingFolder, from_catalog
from agentic_onnx.core.errors import InvalidModelError


def _facts(model_id: str):  # noqa: ANN202 - EmbeddingFacts
    from agentic_onnx.core.models.catalog import load_catalog

    entry = load_catalog().get(model_id)
    if entry is None or entry.embedding is None:
        raise InvalidModelError(f"{model_id!r} is not an embedding model of the catalog.")
    return entry.embedding


def require_embedding_files(model_id: str, repo: str, names: Iterable[str]) -> None:
    """Before any byte: the listing must hold the encoder graph and the tokenizer."""
    facts = _facts(model_id)
    missing = [path for path in (facts.onnx_file, facts.tokenizer_file) if path not in set(names)]
    if missing:
        raise InvalidModelError(f"{repo} has no {', '.join(missing)}: the catalog entry "
                                f"{model_id} does not match the repo. Nothing was downloaded.",
                                "Report it, or pin a --revision that has the files.")


def check_staged_embedding(model_id: str, folder: Path) -> EmbeddingFolder:
    """The staged folder holds what the engine will open."""
    return from_catalog(folder, model_id, _facts(model_id))
