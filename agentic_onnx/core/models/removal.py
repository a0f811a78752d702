"""The rules of `onnx remove NAME`: what removing a name means, decided before anything is touched.

- A model added with `onnx add --path` is unregistered; its folder is never touched.
- A custom model added with `--repo` and never downloaded is unregistered.
- A model in the store (or a partial download of it) is deleted, only ever inside the store;
  a custom registration of that name goes too. This is the one case worth a confirmation.
- Anything else is not installed: ModelNotFoundError.

`plan_removal` decides (and first sweeps what a killed remove or download left behind);
`carry_out` does it. The CLI asks in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentic_onnx.core.errors import ModelNotFoundError

Action = Literal["unlink", "unregister", "delete"]


@dataclass(frozen=True)
class Removal:
    model_id: str
    action: Action  # unlink: an `--path` model; unregister: a never-downloaded custom; delete
    folder: Path  # the linked folder (left alone), or the store folder that is deleted
    registered: bool  # a custom registration of the name goes too

    @property
    def deletes_files(self) -> bool:
        return self.action == "delete"


def plan_removal(model_id: str) -> Removal:
    """What `onnx remove model_id` will do; ModelNotFoundError when there is nothing to remove."""
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.leftovers import sweep_leftovers
    from agentic_onnx.core.models.names import check_model_name
    from agentic_onnx.core.models.store import model_dir, partial_dir

    check_model_name(model_id)
    sweep_leftovers()  # what a killed remove or download left behind
    custom = get_custom_model(model_id)
    if custom is not None and custom.path is not None:
        return Removal(model_id, "unlink", Path(custom.path), True)
    folder = model_dir(model_id)
    if folder.exists() or partial_dir(model_id).exists():
        return Removal(model_id, "delete", folder, custom is not None)
    if custom is not None:
        return Removal(model_id, "unregister", folder, True)
    raise not_installed(model_id)


def carry_out(removal: Removal) -> None:
    """Do what `removal` says (the registration goes last, so a failed delete keeps it)."""
    from agentic_onnx.core.models.custom_models import remove_custom_model
    from agentic_onnx.core.models.store import remove_model

    if removal.deletes_files:
        remove_model(removal.model_id)
    if removal.registered and not remove_custom_model(removal.model_id) \
            and removal.action == "unregister":
        raise not_installed(removal.model_id)  # another process unregistered it meanwhile


def not_installed(model_id: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"Model {model_id!r} is not installed.",
                              "See `agentic-onnx onnx list`.")
