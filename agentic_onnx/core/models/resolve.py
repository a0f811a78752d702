"""One function turns `--model X` into a checked model folder, so every command resolves models
the same way.

X may be: a path to a genai model folder; a catalog id (`phi-3-mini-4k-cpu`); a family alias
(`phi-3-mini-4k`, which picks the variant for this machine and says why); a name registered
with `onnx add`; or nothing (the hardware-based recommendation). A known model that is not in
the store raises `NotInstalledError`, which carries the download command. Resolving an
installed model reads only local files: it never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentic_onnx.core.models.catalog import HubModel
from agentic_onnx.core.errors import ModelNotFoundError, NotInstalledError, UsageError
from agentic_onnx.core.models.model_folder import ModelFolder, open_model_folder
from agentic_onnx.core.models.names import check_model_name, is_model_name


@dataclass(frozen=True)
class Resolution:
    folder: ModelFolder
    model_id: str | None  # the store id, when the model lives in the store
    note: str | None = None  # which model an alias or the default picked, and why


def resolve_model(spec: str | None) -> ModelFolder:
    return resolve(spec).folder


def resolve(spec: str | None, machine: Callable[[], object] | None = None) -> Resolution:
    """Resolve `spec`; `machine` returns `MachineFacts` (defaults to probing this machine,
    which only aliases and the default need)."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.recommend import choose_variant, probe_machine, recommend

    machine = machine or probe_machine
    if spec is None or not spec.strip():
        choice = recommend(load_catalog(), machine(), _installed_ids())
        note = f"No --model given: using {choice.model_id} ({choice.reason})."
        return _from_store(choice.model_id, note)
    if looks_like_path(spec.strip()):
        spec = spec.strip()
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"Model {spec!r} not found: no such folder.",
                                     "Pass --model with a folder that holds genai_config.json, "
                                     "or a model id from `agentic-onnx onnx models`.")
        return Resolution(open_model_folder(path), None)
    if not is_model_name(spec):  # one name rule (core/models/names.py), so "x\n" never means "x"
        if Path(spec).is_dir():  # a folder in the current directory, named like `MyModel`
            return Resolution(open_model_folder(Path(spec)), None)
        check_model_name(spec)
    catalog = load_catalog()
    entry = catalog.get(spec) or next(iter(catalog.family(spec)), None)
    if entry is not None and entry.kind != "chat":
        from agentic_onnx.core.errors import WrongModelKindError

        raise WrongModelKindError(spec, entry.kind, "chat")
    if catalog.get(spec) is not None:
        return _from_store(spec, None)
    if catalog.family(spec):
        choice = choose_variant(catalog, spec, machine(), _installed_ids())
        return _from_store(choice.model_id, f"{spec} -> {choice.model_id} ({choice.reason}).")
    custom = get_custom_model(spec)
    if custom is not None:
        if custom.path is not None:
            return Resolution(open_model_folder(Path(custom.path)), None)
        return _from_store(spec, None)
    if Path(spec).is_dir():
        return Resolution(open_model_folder(Path(spec)), None)
    from agentic_onnx.core.models.store import is_installed

    if is_installed(spec):  # a model made by `onnx import` (in the store, in no catalog)
        return _from_store(spec, None)
    raise ModelNotFoundError(
        f"Model {spec!r} not found: it is not a folder, a catalog id, an alias or a custom model.",
        "See `agentic-onnx onnx models` for the catalog, or pass a folder that holds "
        "genai_config.json.",
    )


def resolve_for_use(spec: str | None) -> Resolution:
    """The model `run` and `chat` are about to use: `resolve(spec)`, and a store model's last
    use recorded (`onnx list`'s "last used"). A known model that is not installed raises
    NotInstalledError; its `model_id` is what to download before resolving that id again."""
    resolution = resolve(spec)
    if resolution.model_id:
        from agentic_onnx.core.models.store import mark_used

        mark_used(resolution.model_id)
    return resolution


def download_source(spec: str, machine: Callable[[], object] | None = None) -> tuple[HubModel, str | None]:
    """What `onnx download SPEC` fetches: a catalog id, an alias (with the note saying which
    variant and why) or a custom hub model."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.custom_models import get_custom_model
    from agentic_onnx.core.models.recommend import choose_variant, probe_machine

    check_model_name(spec)
    catalog = load_catalog()
    if (entry := catalog.get(spec)) is not None:
        return entry.hub_model(), None
    if catalog.family(spec):
        choice = choose_variant(catalog, spec, (machine or probe_machine)(), _installed_ids())
        entry = catalog.get(choice.model_id)
        assert entry is not None
        return entry.hub_model(), f"{spec} -> {choice.model_id} ({choice.reason})."
    custom = get_custom_model(spec)
    if custom is not None and custom.repo is not None:
        return custom.hub_model(), None
    if custom is not None:
        raise UsageError(f"{spec!r} is a local folder ({custom.path}); there is nothing to download.")
    raise ModelNotFoundError(f"Unknown model {spec!r}.",
                             "See `agentic-onnx onnx models`, or register a hub model with "
                             "`agentic-onnx onnx add NAME --repo ORG/NAME --subfolder SUB`.")


def _from_store(model_id: str, note: str | None) -> Resolution:
    from agentic_onnx.core.models.store import is_installed, model_dir

    if not is_installed(model_id):
        raise NotInstalledError(model_id, reason=note)
    return Resolution(open_model_folder(model_dir(model_id)), model_id, note)


def _installed_ids() -> set[str]:
    from agentic_onnx.core.models.store import installed_models

    return {manifest.id for manifest, _ in installed_models()}


def looks_like_path(spec: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in spec for sep in separators) or spec.startswith((".", "~"))


def model_names(kind: str = "chat") -> list[str]:
    """Every name `--model` takes besides a path: catalog ids and family aliases of `kind`,
    installed store ids and `onnx add` names (for tab completion; local files only, nothing is
    probed)."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.custom_models import load_custom_models
    from agentic_onnx.core.models.store import installed_models

    catalog = load_catalog()
    entries = [entry for entry in catalog.models if entry.kind == kind]
    names = [entry.id for entry in entries] + sorted({entry.family for entry in entries})
    names += [manifest.id for manifest, _ in installed_models()]
    names += list(load_custom_models().models)
    return sorted(set(names))
