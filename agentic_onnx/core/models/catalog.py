"""The model catalog: a data file shipped in the package (`data/catalog.json`), validated here.

Each entry is one *variant* (one subfolder of one hub repo, built for one execution provider).
Variants of the same model share a `family`, which is also an alias: `--model phi-3-mini-4k`
picks the variant that suits this machine (see `recommend.py`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentic_onnx.core.models.names import MODEL_NAME_PATTERN

# Model ids become folder names in the store: the one name rule of core/models/names.py (pydantic's
# regex engine anchors `$` at the very end, so this schema pattern refuses a trailing newline).
MODEL_ID_PATTERN = rf"^{MODEL_NAME_PATTERN}$"
REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ExecutionProvider = Literal["cpu", "cuda", "dml", "webgpu"]
Capability = Literal["chat", "tools", "vision"]
ModelKind = Literal["chat", "embedding"]  # chat: onnxruntime-genai; embedding: an encoder (core/embeddings)


class Requirements(BaseModel):
    """What a variant needs to run comfortably (our estimates; see docs/catalog.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_ram_gb: float = Field(ge=0, description="System RAM, GiB.")
    min_vram_gb: float = Field(0, ge=0, description="GPU memory, GiB (0 for CPU variants).")


class EmbeddingFacts(BaseModel):
    """How an embedding model turns text into a vector (docs/embeddings.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    onnx_file: str = Field(description="The encoder graph, relative to the model folder.")
    tokenizer_file: str = "tokenizer.json"
    dimension: int = Field(gt=0)
    max_tokens: int = Field(gt=0, description="Longer inputs are truncated (and reported).")
    pooling: Literal["mean", "cls"]
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""
    dimensions: tuple[int, ...] = Field(default=(), description="Smaller sizes the model was "
                                        "trained to be cut to (Matryoshka); empty: none.")

    @field_validator("onnx_file", "tokenizer_file")
    @classmethod
    def _safe_file(cls, value: str) -> str:
        return check_hub_path(value)


class CatalogEntry(BaseModel):
    """One downloadable variant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=MODEL_ID_PATTERN)
    family: str = Field(pattern=MODEL_ID_PATTERN)
    name: str
    repo: str = Field(pattern=REPO_ID_PATTERN)
    subfolder: str
    revision: str = "main"
    execution_provider: ExecutionProvider
    precision: str
    quantization: str | None = None
    size_bytes: int = Field(gt=0, description="Approximate download size (display only).")
    context_length: int = Field(gt=0)
    requirements: Requirements
    license: str
    capabilities: tuple[Capability, ...] = ("chat",)
    sources: tuple[str, ...] = Field(min_length=1)
    unverified: tuple[str, ...] = Field(default=(), description="Fields no public source confirmed.")
    kind: ModelKind = "chat"
    files: tuple[str, ...] = Field(default=(), description="Only these files of the subfolder "
                                   "(embedding repos hold several exports); empty: all of it.")
    embedding: EmbeddingFacts | None = None

    @field_validator("subfolder")
    @classmethod
    def _safe_subfolder(cls, value: str) -> str:
        return check_hub_path(value, allow_empty=True)

    @field_validator("files")
    @classmethod
    def _safe_files(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_hub_path(path) for path in value)

    @model_validator(mode="after")
    def _kind_facts(self) -> CatalogEntry:
        if (self.kind == "embedding") != (self.embedding is not None):
            raise ValueError(f"{self.id}: an embedding entry needs `embedding` facts, and only it")
        needed = (self.embedding.onnx_file, self.embedding.tokenizer_file) if self.embedding else ()
        missing = [path for path in needed if self.files and path not in self.files]
        if missing:
            raise ValueError(f"{self.id}: `files` leaves out {missing}")
        return self

    def hub_model(self) -> HubModel:
        return HubModel(id=self.id, repo=self.repo, subfolder=self.subfolder,
                        revision=self.revision, execution_provider=self.execution_provider,
                        precision=self.precision, origin="catalog", kind=self.kind,
                        files=self.files)


class Recommendation(BaseModel):
    """The seed's `selectModelForHardware` picks, as data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str
    large_cpu: str
    small_cpu: str


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    recommendation: Recommendation
    models: tuple[CatalogEntry, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        ids = [entry.id for entry in self.models]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"duplicate ids: {sorted(duplicates)}")
        clashes = set(ids) & {entry.family for entry in self.models}
        if clashes:
            raise ValueError(f"ids that are also family names: {sorted(clashes)}")
        for pick in (self.recommendation.gpu, self.recommendation.large_cpu,
                     self.recommendation.small_cpu):
            if pick not in ids:
                raise ValueError(f"recommendation names unknown id {pick!r}")
            if self.get(pick).kind != "chat":  # type: ignore[union-attr]
                raise ValueError(f"recommendation names {pick!r}, which is not a chat model")
        return self

    def get(self, model_id: str) -> CatalogEntry | None:
        return next((entry for entry in self.models if entry.id == model_id), None)

    def family(self, name: str) -> list[CatalogEntry]:
        return [entry for entry in self.models if entry.family == name]

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(entry.family for entry in self.models))


@dataclass(frozen=True)
class HubModel:
    """Where a store model comes from: a catalog variant or a custom `onnx add --repo` model."""

    id: str
    repo: str
    subfolder: str
    revision: str = "main"
    execution_provider: str | None = None
    precision: str | None = None
    origin: str = "catalog"
    kind: str = "chat"  # chat | embedding
    files: tuple[str, ...] = ()  # only these paths (relative to subfolder); empty: all of it


def check_hub_path(value: str, allow_empty: bool = False) -> str:
    """A relative POSIX path inside a repo: no `..`, no absolute path, no backslash, no empty part."""
    value = value.strip().rstrip("/") if allow_empty else value  # "onnx/" is fine, "/onnx" is not
    if not value:
        if allow_empty:
            return ""
        raise ValueError("empty path")
    if value.startswith("/") or "\\" in value or re.match(r"^[A-Za-z]:", value) or "\x00" in value:
        raise ValueError(f"unsafe path {value!r}")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(f"unsafe path {value!r}")
    return value


def parse_catalog(text: str) -> Catalog:
    """Validate catalog JSON text (raises `ValueError` with pydantic's explanation)."""
    try:
        return Catalog.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ValueError(f"invalid model catalog: {error}") from None


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped with the package (read once per process)."""
    text = resources.files("agentic_onnx").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return parse_catalog(text)
