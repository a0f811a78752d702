"""`embed --model X` (and `serve --model X` for an embedding model) -> a checked embedding folder.

X may be a catalog id of kind `embedding`, its family alias, or a folder path. A chat model
(catalog entry, genai folder, custom model) is a `WrongModelKindError`, so the user learns which
command takes it; a known model that is not installed raises `NotInstalledError` with the
download command. Reads local files only.
"""

from __future__ import annotations

from pathlib import Path

from agentic_onnx.core.embeddings.folder import EmbeddingFolder, from_catalog, open_embedding_folder
from agentic_onnx.core.errors import ModelNotFoundError, NotInstalledError, UsageError, WrongModelKindError
from agentic_onnx.core.models.model_folder import GENAI_CONFIG


def embedding_kind(spec: str | None) -> str | None:
    """`embedding` or `chat` when `spec` is a catalog id, alias or folder whose kind we can tell
    without loading anything; None when it names nothing we know."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.resolve import looks_like_path

    if not spec or not spec.strip():
        return None
    spec = spec.strip()
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if (path / GENAI_CONFIG).is_file():
            return "chat"
        return "embedding" if path.is_dir() else None
    catalog = load_catalog()
    entry = catalog.get(spec) or next(iter(catalog.family(spec)), None)
    return entry.kind if entry is not None else None


def resolve_embedding(spec: str | None) -> EmbeddingFolder:
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.resolve import looks_like_path

    catalog = load_catalog()
    if spec is None or not spec.strip():
        ids = ", ".join(e.id for e in catalog.models if e.kind == "embedding")
        raise UsageError("No embedding model given.", f"Pass --model with one of: {ids}, or a folder.")
    spec = spec.strip()
    if looks_like_path(spec):
        return _from_path(Path(spec).expanduser(), spec)
    entry = catalog.get(spec) or next(iter(catalog.family(spec)), None)
    if entry is not None:
        if entry.kind != "embedding":
            raise WrongModelKindError(spec, entry.kind, "embedding")
        return _from_store(entry)
    custom = get_custom_model(spec)
    if custom is not None:
        if custom.path is None:
            raise WrongModelKindError(spec, "chat", "embedding")
        return _from_path(Path(custom.path), spec)
    raise ModelNotFoundError(f"Embedding model {spec!r} not found: it is not a catalog id, an "
                             "alias or a folder.",
                             "See `agentic-onnx onnx models` for the embedding models.")


def _from_path(path: Path, spec: str) -> EmbeddingFolder:
    if (path / GENAI_CONFIG).is_file():
        raise WrongModelKindError(spec, "chat", "embedding")
    return open_embedding_folder(path)


def _from_store(entry) -> EmbeddingFolder:  # noqa: ANN001 - a CatalogEntry
    from agentic_onnx.core.models.store import is_installed, model_dir

    if not is_installed(entry.id):
        raise NotInstalledError(entry.id)
    return from_catalog(model_dir(entry.id), entry.id, entry.embedding)
