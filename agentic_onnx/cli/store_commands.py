"""`agentic-onnx onnx models|download|list|remove|verify|add`: the catalog and the model store.

Thin: parse, call one core function, render. Heavy modules (huggingface_hub, onnxruntime_genai,
pynvml) are imported inside the commands that need them, never by `--help` or `onnx list`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, JsonOpt

ModelIdArg = Annotated[str, typer.Argument(metavar="ID", help="A catalog id, family alias or custom name.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def models_command(json_output: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the model catalog: EP, precision, size, context, installed, fits this machine."""
    from agentic_onnx.cli import render
    from agentic_onnx.cli.store_view import catalog_table, embedding_table, fit_notes

    rows = catalog_rows()
    if json_output:
        render.print_json(rows)
    else:
        render.print_table(catalog_table(rows))
        if any(row.get("kind") == "embedding" for row in rows):
            render.print_table(embedding_table(rows))
        for line in fit_notes(rows):
            render.stdout_console().print(line)


def catalog_rows() -> list[dict[str, Any]]:
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
                     "context_length": None, "kind": "chat", "installed": custom.path is not None or custom.name in installed,
                     "fits": None, "fit_reason": "unknown for custom models", "recommended": False,
                     "estimated_tokens_per_s": None, "estimate_bound": None})
    return rows


def download_command(
    model_id: ModelIdArg,
    revision: Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Branch, tag or commit. Default: the catalog's.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if installed.")] = False,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download a model into the store: progress, resume after interruption, SHA-256 checked."""
    from agentic_onnx.cli import render

    result = download_with_progress(model_id, revision=revision, force=force)
    manifest = result.manifest
    if json_output:
        render.print_json({"id": manifest.id, "path": str(result.path), "repo": manifest.repo,
                           "subfolder": manifest.subfolder, "revision": manifest.revision,
                           "commit": manifest.commit, "size_bytes": manifest.size_bytes,
                           "already_installed": result.already_installed,
                           "downloaded_bytes": result.downloaded_bytes,
                           "resumed_bytes": result.resumed_bytes})
    else:
        print(result.path)


def download_with_progress(spec: str, revision: str | None = None, force: bool = False):  # noqa: ANN201
    """Download with the progress view; Ctrl-C stops cleanly and exits 130 (a rerun resumes)."""
    from agentic_onnx.cli import render
    from agentic_onnx.cli.store_view import DownloadProgressView
    from agentic_onnx.core.models.download import download_model
    from agentic_onnx.core.errors import ExitCode
    from agentic_onnx.core.models.resolve import download_source
    from agentic_onnx.core.models.store import format_bytes

    source, note = download_source(spec)
    if note:
        render.note(note)
    try:
        with DownloadProgressView(source.id) as view:
            result = download_model(source, revision=revision, force=force, listener=view)
    except KeyboardInterrupt:
        render.note(f"Interrupted. Run `agentic-onnx onnx download {source.id}` to resume.")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    manifest = result.manifest
    if result.already_installed:
        render.note(f"{manifest.id} is already installed (commit {manifest.commit[:7]}); "
                    "pass --force to download it again.")
    else:
        render.note(f"Installed {manifest.id} ({format_bytes(manifest.size_bytes)}, "
                    f"{len(manifest.files)} files verified, commit {manifest.commit[:7]}).")
    return result


def list_command(json_output: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List installed models: size on disk, EP, revision, last used, path."""
    from agentic_onnx.cli import render
    from agentic_onnx.cli.store_view import installed_table
    from agentic_onnx.core.models.leftovers import sweep_leftovers
    from agentic_onnx.core.models.adapters import installed_adapters
    from agentic_onnx.core.models.linked_models import linked_models
    from agentic_onnx.core.models.store import installed_models

    sweep_leftovers()  # what a killed remove or download left behind
    rows = [{"id": m.id, "path": str(path), "size_bytes": _size_on_disk(path),
             "repo": m.repo, "subfolder": m.subfolder, "revision": m.revision, "commit": m.commit,
             "execution_provider": m.execution_provider, "precision": m.precision,
             "origin": m.origin, "downloaded_at": m.downloaded_at, "last_used_at": m.last_used_at,
             "kind": m.kind, "linked": False}
            for m, path in installed_models()]
    rows += [model.to_json() for model in linked_models()]  # `onnx add --path`: used in place
    for row in rows:  # LoRA adapters kept beside their base (`onnx import --adapter`)
        row["adapters"] = [{"name": name, "path": str(file), "size_bytes": file.stat().st_size}
                           for name, file in installed_adapters(Path(row["path"])).items()]
    if json_output:
        render.print_json(rows)
    elif rows:
        render.print_table(installed_table(rows))
        for row in rows:
            if row.get("problem"):
                render.warning(f"{row['id']}: {row['problem']} ({row['path']}).")
    else:
        render.note("No models installed. Try `agentic-onnx onnx models`, then "
                    "`agentic-onnx onnx download ID`.")


def _size_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def remove_command(model_id: ModelIdArg, yes: YesOpt = False, debug: DebugOpt = False) -> None:
    """Delete an installed model (only ever inside the store). Asks first on a terminal."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.models.custom_models import get_custom_model, remove_custom_model
    from agentic_onnx.core.errors import ModelNotFoundError
    from agentic_onnx.core.models.leftovers import sweep_leftovers
    from agentic_onnx.core.models.names import check_model_name
    from agentic_onnx.core.models.store import model_dir, partial_dir, remove_model

    check_model_name(model_id)
    sweep_leftovers()  # what a killed remove or download left behind
    custom = get_custom_model(model_id)
    if custom is not None and custom.path is not None:
        remove_custom_model(model_id)
        render.note(f"Unregistered {model_id}; its folder {custom.path} was left untouched.")
        return
    folder = model_dir(model_id)
    if not folder.exists() and not partial_dir(model_id).exists():
        if custom is not None and remove_custom_model(model_id):
            render.note(f"Unregistered {model_id} (it was not downloaded).")
            return
        raise ModelNotFoundError(f"Model {model_id!r} is not installed.",
                                 "See `agentic-onnx onnx list`.")
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        if not typer.confirm(f"Delete {model_id} from {folder}?", default=False, err=True):
            render.note("Nothing removed.")
            raise typer.Exit(0)
    remove_model(model_id)
    if custom is not None:
        remove_custom_model(model_id)
    render.note(f"Removed {model_id}.")


def verify_command(model_id: ModelIdArg, json_output: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Re-check the SHA-256 of every file of an installed model against its manifest; for a
    model added with `onnx add --path`: its files are readable, its config valid, and it loads."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.models.linked_models import is_linked, verify_linked
    from agentic_onnx.core.models.store import verify_model

    if is_linked(model_id):
        check = verify_linked(model_id)
        if json_output:
            render.print_json(check.to_json())
        else:
            print(f"{model_id}: {check.files} files readable, loads on "
                  f"{check.execution_provider} ({check.model.path}) OK")
        return
    manifest = verify_model(model_id)
    if json_output:
        render.print_json({"id": manifest.id, "ok": True, "files": len(manifest.files),
                           "size_bytes": manifest.size_bytes})
    else:
        print(f"{manifest.id}: {len(manifest.files)} files OK")


def add_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name to use with --model.")],
    path: Annotated[Optional[Path], typer.Option("--path", metavar="DIR", help="A local onnxruntime-genai model folder.")] = None,
    repo: Annotated[Optional[str], typer.Option("--repo", metavar="ORG/NAME", help="A hub repo to download from.")] = None,
    subfolder: Annotated[str, typer.Option("--subfolder", metavar="SUB", help="The repo folder that holds genai_config.json.")] = "",
    revision: Annotated[str, typer.Option("--revision", metavar="REV", help="Branch, tag or commit.")] = "main",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing custom model of that name.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Register a custom model: a local folder (--path) or a hub model to download (--repo)."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.models.custom_models import add_custom_model

    model = add_custom_model(name, path=path, repo=repo, subfolder=subfolder, revision=revision,
                             replace=force)
    if model.path is not None:
        render.note(f"Registered {name} -> {model.path}. Use it with --model {name}.")
    else:
        render.note(f"Registered {name} -> {model.repo}/{model.subfolder}. "
                    f"Download it with `agentic-onnx onnx download {name}`.")


def _offer_details(model_id: str) -> str:
    """` (2.7 GB; 40.1 GB free after; ~11 tok/s here)` for a catalog model, else nothing."""
    from agentic_onnx.core.models.recommend import describe_download

    details = describe_download(model_id)
    return f" ({details})" if details else ""


def resolve_for_run(spec: str | None, assume_yes: bool = False):  # noqa: ANN201
    """`run`'s model: resolve it; a known model that is missing is offered for download on a
    terminal (or fetched with --yes); otherwise the error carries the download command."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.errors import NotInstalledError
    from agentic_onnx.core.models.resolve import resolve
    from agentic_onnx.core.models.store import mark_used

    try:
        resolution = resolve(spec)
    except NotInstalledError as error:
        can_ask = sys.stdin.isatty() and sys.stderr.isatty()
        if not assume_yes and not (can_ask and typer.confirm(
                f"{error.message} Download it now{_offer_details(error.model_id)}?",
                default=False, err=True)):
            raise
        download_with_progress(error.model_id)
        resolution = resolve(error.model_id)
    if resolution.note:
        render.note(resolution.note)
    if resolution.model_id:
        mark_used(resolution.model_id)
    return resolution.folder
