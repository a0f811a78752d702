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

# Model ids become folder names in the store: lower-case, no separators, no leading dot.
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,79}$"
REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ExecutionProvider = Literal["cpu", "cuda", "dml", "webgpu"]
Capability = Literal["chat", "tools", "vision"]


class Requirements(BaseModel):
    """What a variant needs to run comfortably (our estimates; see docs/catalog.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_ram_gb: float = Field(ge=0, description="System RAM, GiB.")
    min_vram_gb: float = Field(0, ge=0, description="GPU memory, GiB (0 for CPU variants).")


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

    @field_validator("subfolder")
    @classmethod
    def _safe_subfolder(cls, value: str) -> str:
        return check_hub_path(value, allow_empty=True)

    def hub_model(self) -> HubModel:
        return HubModel(id=self.id, repo=self.repo, subfolder=self.subfolder,
                        revision=self.revision, execution_provider=self.execution_provider,
                        precision=self.precision, origin="catalog")


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
