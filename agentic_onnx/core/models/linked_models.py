"""Models added with `onnx add NAME --path DIR`: used in place, never copied into the store, yet
listed, checked and served like installed ones (`onnx list`, `onnx verify`, `serve -m NAME`).

They have no manifest (nothing was downloaded, so there are no hub hashes to compare against):
`verify` checks what can be checked without one: every file present and readable, the
genai_config valid, and the model loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentic_onnx.core.models.custom_models import CustomModel, get_custom_model, load_custom_models
from agentic_onnx.core.errors import AgenticError, VerificationError


@dataclass(frozen=True)
class LinkedModel:
    name: str
    path: Path
    added_at: str
    size_bytes: int | None  # None when the folder is gone
    execution_provider: str | None  # what the variant was built for, when its config reads
    problem: str | None  # why it cannot be used as it is; None when it looks usable

    def to_json(self) -> dict[str, object]:
        return {"id": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                "origin": "linked", "linked": True, "kind": "chat",
                "execution_provider": self.execution_provider, "added_at": self.added_at,
                "problem": self.problem}


def linked_models() -> list[LinkedModel]:
    """Every linked model, in name order, with what a quick look at its folder says."""
    models = load_custom_models().models
    return [describe(models[name]) for name in sorted(models) if models[name].path is not None]


def describe(model: CustomModel) -> LinkedModel:
    from agentic_onnx.core.models.model_folder import open_model_folder

    path = Path(model.path or "")
    if not path.is_dir():
        return LinkedModel(model.name, path, model.added_at, None, None,
                           "the folder no longer exists")
    size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    try:
        built_for = open_model_folder(path).built_for
    except AgenticError as error:
        return LinkedModel(model.name, path, model.added_at, size, None, error.message)
    return LinkedModel(model.name, path, model.added_at, size, built_for, None)


@dataclass(frozen=True)
class LinkedCheck:
    model: LinkedModel
    files: int
    execution_provider: str
    load_s: float

    def to_json(self) -> dict[str, object]:
        return {"id": self.model.name, "ok": True, "linked": True, "files": self.files,
                "size_bytes": self.model.size_bytes, "execution_provider": self.execution_provider,
                "load_s": round(self.load_s, 4)}


def is_linked(name: str) -> bool:
    model = get_custom_model(name)
    return model is not None and model.path is not None


def verify_linked(name: str, execution_provider: str = "auto") -> LinkedCheck:
    """Files present and readable, genai_config valid, and the model loads; a
    VerificationError (exit 7) names the first thing that is not so."""
    model = get_custom_model(name)
    assert model is not None and model.path is not None
    linked = describe(model)
    if linked.problem is not None:
        raise _failed(name, linked.problem)
    files = [file for file in linked.path.rglob("*") if file.is_file()]
    for file in files:
        try:
            with file.open("rb") as handle:
                handle.read(1)
        except OSError as error:
            raise _failed(name, f"{file.relative_to(linked.path)} cannot be read "
                                f"({error.strerror})") from None
    from agentic_onnx.core.generation.engine import load_model
    from agentic_onnx.core.models.model_folder import open_model_folder

    try:
        loaded = load_model(open_model_folder(linked.path), execution_provider)
    except AgenticError as error:
        raise _failed(name, f"it does not load: {error.message}") from None
    return LinkedCheck(linked, len(files), loaded.execution_provider, loaded.load_s)


def _failed(name: str, problem: str) -> VerificationError:
    return VerificationError(f"Linked model {name!r} failed verification: {problem}.",
                             f"Fix the folder, or register it again with `agentic-onnx onnx add "
                             f"{name} --path DIR --force`.")
