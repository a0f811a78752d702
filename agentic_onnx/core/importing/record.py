"""What `onnx import` records in a model's manifest (`imported`): where the weights came from,
how they were converted, and what that cost. Plain data, so core/models/store.py can hold it without
importing the importer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SourceFile(BaseModel):
    """One file of the source checkpoint, hashed before the conversion started."""

    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the source folder (POSIX), or the .gguf file's name
    size: int
    sha256: str


class ImportRecord(BaseModel):
    """The `imported` field of an imported model's manifest (docs/import.md)."""

    model_config = ConfigDict(extra="forbid")

    source_kind: str  # folder | hub | gguf
    path: str | None = None  # the local folder or .gguf file (folder and gguf imports)
    repo: str | None = None  # hub imports: the repo id ...
    revision: str | None = None  # ... the revision asked for ...
    commit: str | None = None  # ... and the commit it resolved to
    config_path: str | None = None  # gguf imports: the folder that gave config.json and the tokenizer
    architecture: str
    files: list[SourceFile]
    builder: str  # "onnxruntime-genai 0.18.0"
    precision: str
    execution_provider: str
    extra_options: dict[str, str] = {}
    build_seconds: float
    peak_rss_bytes: int | None = None  # the builder process's peak resident memory
