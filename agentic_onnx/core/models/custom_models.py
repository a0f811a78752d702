"""Models the user registered with `onnx add`: a local genai folder, or a hub repo/subfolder to
download into the store. Kept in `~/.agentic-flow/custom-models.json` (atomic writes)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentic_onnx.core.models.catalog import (
    REPO_ID_PATTERN,
    HubModel,
    check_hub_path,
    load_catalog,
)
from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.models.names import NAME_RULE, check_model_name, is_model_name
from agentic_onnx.core.paths import home_dir
from agentic_onnx.core.models.store import write_json_atomic

CUSTOM_MODELS_FILE = "custom-models.json"


class CustomModel(BaseModel):
    """Exactly one of `path` (a local folder, used in place) or `repo` (downloaded to the store)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None
    repo: str | None = Field(None, pattern=REPO_ID_PATTERN)
    subfolder: str = ""
    revision: str = "main"
    added_at: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_model_name(value):
            raise ValueError(f"invalid model name {value!r}: {NAME_RULE}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CustomModel:
        if (self.path is None) == (self.repo is None):
            raise ValueError("a custom model has either a path or a repo")
        self.subfolder = check_hub_path(self.subfolder, allow_empty=True)
        return self

    def hub_model(self) -> HubModel:
        assert self.repo is not None
        return HubModel(id=self.name, repo=self.repo, subfolder=self.subfolder,
                        revision=self.revision, origin="custom")


class CustomModels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    models: dict[str, CustomModel] = {}


def custom_models_path() -> Path:
    return home_dir() / CUSTOM_MODELS_FILE


def load_custom_models() -> CustomModels:
    path = custom_models_path()
    if not path.is_file():
        return CustomModels()
    try:
        with local_files("read the custom model registry"):
            text = path.read_text(encoding="utf-8")
        return CustomModels.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not a valid custom model registry ({_first_line(error)}).",
                         "Fix or delete the file, then register the models again with `onnx add`.") from None


def get_custom_model(name: str) -> CustomModel | None:
    return load_custom_models().models.get(name)


def add_custom_model(name: str, *, path: Path | None = None, repo: str | None = None,
                     subfolder: str = "", revision: str = "main", replace: bool = False) -> CustomModel:
    """Register `name`. A folder is validated now (it must hold a loadable genai config); a hub
    model is validated when it is downloaded."""
    _check_name(name)
    if (path is None) == (repo is None):
        raise UsageError("Give either --path DIR or --repo ORG/NAME.",
                         "Example: agentic-onnx onnx add my-model --path ./my-model")
    registry = load_custom_models()
    if name in registry.models and not replace:
        raise UsageError(f"A custom model named {name!r} already exists.",
                         f"Pass --force to replace it, or `agentic-onnx onnx remove {name}` first.")
    if path is not None:
        folder = open_model_folder(path)  # raises InvalidModelError with the reason
        fields: dict = {"path": str(folder.path)}
    else:
        if not re.fullmatch(REPO_ID_PATTERN, repo or ""):
            raise UsageError(f"{repo!r} is not a hub repo id.", "Use the form ORG/NAME.")
        try:
            subfolder = check_hub_path(subfolder, allow_empty=True)
        except ValueError as error:
            raise UsageError(f"Invalid --subfolder: {error}.") from None
        fields = {"repo": repo, "subfolder": subfolder, "revision": revision}
    model = CustomModel(name=name, added_at=_now(), **fields)
    registry.models[name] = model
    _save(registry)
    return model


def remove_custom_model(name: str) -> bool:
    """Unregister `name`; a registered folder itself is never touched."""
    registry = load_custom_models()
    if registry.models.pop(name, None) is None:
        return False
    _save(registry)
    return True


def _check_name(name: str) -> None:
    check_model_name(name)
    catalog = load_catalog()
    if catalog.get(name) or name in catalog.families:
        raise UsageError(f"{name!r} is already a catalog model or alias.", "Choose another name.")


def _save(registry: CustomModels) -> None:
    path = custom_models_path()
    with local_files("write the custom model registry"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, registry.model_dump(mode="json"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]

