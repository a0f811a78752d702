"""What `onnx models` and `onnx list` say about each model: one row of JSON-able facts per model
(how a row is drawn is the CLI's business; `--json` prints the rows as they are).

The catalog rows join the catalog with this machine (fits, estimated decode rate, the
recommendation) and the store (installed); custom models registered with `onnx add` follow
with what is known of them. The installed rows are the store's manifests plus the linked
models (`onnx add --path`), each with its LoRA adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def catalog_rows() -> list[dict[str, Any]]:
    """The catalog's models, then the custom ones, as `onnx models --json` lists them."""
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.custom_models import load_custom_models
    from agentic_onnx.core.models.recommend import estimate, fit, probe_machine, recommend
    from agentic_onnx.core.models.store import installed_models

    catalog, facts = load_catalog(), probe_machine()
    installed = {manifest.id for manifest, _ in installed_models()}
    recommended = recommend(catalog, facts, installed).model_id
    rows = []
    for entry in catalog.models:
        verdict, rate = fit(entry, facts), estimate(entry, facts)
        rows.append({**entry.model_dump(mode="json"), "origin": "catalog",
                     "installed": entry.id in installed, "fits": verdict.fits,
                     "fit_reason": verdict.reason, "recommended": entry.id == recommended,
                     "estimated_tokens_per_s": rate and round(rate.tokens_per_s, 1),
                     "estimate_bound": rate and rate.bound})
    for custom in load_custom_models().models.values():
        rows.append({"id": custom.name, "origin": "custom", "repo": custom.repo,
                     "subfolder": custom.subfolder, "revision": custom.revision, "path": custom.path,
                     "execution_provider": None, "precision": None, "size_bytes": None,
                     "context_length": None, "kind": "chat",
                     "installed": custom.path is not None or custom.name in installed,
                     "fits": None, "fit_reason": "unknown for custom models", "recommended": False,
                     "estimated_tokens_per_s": None, "estimate_bound": None})
    return rows


def unfit_by_reason(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Why models do not fit this machine: reason -> the ids it rules out, in row order."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        if row["fits"] is False:
            by_reason.setdefault(row["fit_reason"], []).append(row["id"])
    return by_reason


def installed_rows() -> list[dict[str, Any]]:
    """Installed and linked models with their adapters, as `onnx list --json` lists them.
    What a killed remove or download left behind is swept first."""
    from agentic_onnx.core.models.adapters import installed_adapters
    from agentic_onnx.core.models.leftovers import sweep_leftovers
    from agentic_onnx.core.models.linked_models import linked_models
    from agentic_onnx.core.models.store import installed_models

    sweep_leftovers()
    rows = [{"id": m.id, "path": str(path), "size_bytes": size_on_disk(path),
             "repo": m.repo, "subfolder": m.subfolder, "revision": m.revision, "commit": m.commit,
             "execution_provider": m.execution_provider, "precision": m.precision,
             "origin": m.origin, "downloaded_at": m.downloaded_at, "last_used_at": m.last_used_at,
             "kind": m.kind, "linked": False}
            for m, path in installed_models()]
    rows += [model.to_json() for model in linked_models()]  # `onnx add --path`: used in place
    for row in rows:  # LoRA adapters kept beside their base (`onnx import --adapter`)
        row["adapters"] = [{"name": name, "path": str(file), "size_bytes": file.stat().st_size}
                           for name, file in installed_adapters(Path(row["path"])).items()]
    return rows


def size_on_disk(folder: Path) -> int:
    """Bytes of the folder's regular files (a symlink is not counted: it is not this model's)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
