"""An embedding model folder and how to use it: which graph and tokenizer, the pooling, whether to
normalise, the token limit and the prefixes.

Catalog models carry these facts in the catalog (`EmbeddingFacts`); a folder passed as a path is
read the way sentence-transformers lays one out (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`, `config.json`, `onnx/model.onnx` or `model.onnx`), so an export made
with sentence-transformers or optimum works without a catalog entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agentic_onnx.core.errors import InvalidModelError, ModelNotFoundError

GRAPH_CANDIDATES = ("onnx/model.onnx", "model.onnx")
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_MAX_TOKENS = 512


@dataclass(frozen=True)
class EmbeddingFolder:
    """A checked embedding model folder and the facts that decide its vectors."""

    path: Path
    model_id: str
    onnx_file: str
    tokenizer_file: str
    dimension: int | None  # None until the graph is loaded (a folder without config.json)
    max_tokens: int
    pooling: str  # mean | cls
    normalize: bool
    query_prefix: str = ""
    document_prefix: str = ""
    dimensions: tuple[int, ...] = ()  # smaller sizes it may be cut to (Matryoshka)

    @property
    def graph_path(self) -> Path:
        return self.path / self.onnx_file

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.tokenizer_file

    def prefix(self, input_type: str | None) -> str:
        """The text put before each input: `query` or `document` (the default)."""
        return self.query_prefix if input_type == "query" else self.document_prefix

    def allowed_dimensions(self) -> tuple[int, ...]:
        full = (self.dimension,) if self.dimension else ()
        return tuple(sorted({*full, *self.dimensions}, reverse=True))


def from_catalog(path: Path, model_id: str, facts: Any) -> EmbeddingFolder:
    """A store folder of a catalog entry (`facts`: its `EmbeddingFacts`)."""
    folder = EmbeddingFolder(
        path=path.resolve(), model_id=model_id, onnx_file=facts.onnx_file,
        tokenizer_file=facts.tokenizer_file, dimension=facts.dimension,
        max_tokens=facts.max_tokens, pooling=facts.pooling, normalize=facts.normalize,
        query_prefix=facts.query_prefix, document_prefix=facts.document_prefix,
        dimensions=tuple(facts.dimensions))
    return check_files(folder)


def open_embedding_folder(path: Path, model_id: str | None = None) -> EmbeddingFolder:
    """Read a sentence-transformers-style folder. Defaults where a file is absent: mean pooling,
    normalised (what most sentence-embedding models use), 512 tokens."""
    path = path.expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(f"Embedding model folder {str(path)!r} does not exist.",
                                 "Pass a folder that holds tokenizer.json and an .onnx encoder.")
    graph = next((name for name in GRAPH_CANDIDATES if (path / name).is_file()), None)
    if graph is None:
        raise InvalidModelError(f"{str(path)!r} holds no onnx/model.onnx or model.onnx: it is not "
                                "an embedding model folder.",
                                "Pass the folder of a sentence-embedding ONNX export.")
    config = _json(path / "config.json") or {}
    hidden = config.get("hidden_size")
    folder = EmbeddingFolder(
        path=path.resolve(), model_id=model_id or path.name, onnx_file=graph,
        tokenizer_file=TOKENIZER_FILE, dimension=hidden if isinstance(hidden, int) else None,
        max_tokens=_max_tokens(path, config), pooling=_pooling(path), normalize=_normalizes(path))
    return check_files(folder)


def check_files(folder: EmbeddingFolder) -> EmbeddingFolder:
    for file, what in ((folder.graph_path, "encoder graph"), (folder.tokenizer_path, "tokenizer")):
        if not file.is_file():
            raise InvalidModelError(f"The {what} {file.name!r} is missing from {folder.path}.",
                                    "The download is incomplete: download the model again.")
    return folder


def with_dimension(folder: EmbeddingFolder, dimension: int) -> EmbeddingFolder:
    return replace(folder, dimension=dimension)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InvalidModelError(f"{path} is not valid JSON ({error}).",
                                "Re-download the model or restore the file.") from None


def _max_tokens(path: Path, config: dict[str, Any]) -> int:
    sentence = _json(path / "sentence_bert_config.json") or {}
    for value in (sentence.get("max_seq_length"), config.get("max_position_embeddings")):
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_TOKENS


def _modules(path: Path) -> list[dict[str, Any]]:
    modules = _json(path / "modules.json")
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def _pooling(path: Path) -> str:
    pooling = next((m for m in _modules(path) if str(m.get("type", "")).endswith("Pooling")), None)
    config = _json(path / str(pooling.get("path", "1_Pooling")) / "config.json") if pooling else \
        _json(path / "1_Pooling" / "config.json")
    if isinstance(config, dict):
        if config.get("pooling_mode_cls_token"):
            return "cls"
        if config.get("pooling_mode_mean_tokens"):
            return "mean"
        modes = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
        if modes:
            raise InvalidModelError(f"{path} pools with {modes[0]!r}; only mean and CLS pooling "
                                    "are supported.", "Use a mean- or CLS-pooled model.")
    return "mean"


def _normalizes(path: Path) -> bool:
    modules = _modules(path)
    if not modules:
        return True
    return any(str(m.get("type", "")).endswith("Normalize") for m in modules)
