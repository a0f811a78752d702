"""`agentic-onnx onnx models|download|list|remove|verify|add`: the catalog and the model store.

Thin: parse, call one core function, render. Heavy modules (huggingface_hub, onnxruntime_genai,
pynvml) are imported inside the commands that need them, never by `--help` or `onnx list`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import JsonOpt

ModelIdArg = Annotated[str, typer.Argument(metavar="ID", help="A catalog id, family alias or custom name.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def models_command(json_output: JsonOpt = False) -> None:
    """List the model catalog: EP, precision, size, context, installed, fits this machine."""
    from agentic_onnx.cli.store_view import show_catalog
    from agentic_onnx.core.models.listing import catalog_rows

    output.current().result(catalog_rows(), show_catalog)


def download_command(
    model_id: ModelIdArg,
    revision: Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Branch, tag or commit. Default: the catalog's.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if installed.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Download a model into the store: progress, resume after interruption, SHA-256 checked."""
    result = download_with_progress(model_id, revision=revision, force=force)
    manifest = result.manifest
    output.current().result(
        {"id": manifest.id, "path": str(result.path), "repo": manifest.repo,
         "subfolder": manifest.subfolder, "revision": manifest.revision,
         "commit": manifest.commit, "size_bytes": manifest.size_bytes,
         "already_installed": result.already_installed,
         "downloaded_bytes": result.downloaded_bytes, "resumed_bytes": result.resumed_bytes},
        str(result.path))


def download_with_progress(spec: str, revision: str | None = None, force: bool = False):  # noqa: ANN201
    """Download with the progress view; Ctrl-C stops cleanly and exits 130 (a rerun resumes)."""
    from agentic_onnx.cli.store_view import DownloadProgressView
    from agentic_onnx.core.models.download import download_model
    from agentic_onnx.core.errors import ExitCode
    from agentic_onnx.core.models.resolve import download_source
    from agentic_onnx.core.models.store import format_bytes

    out = output.current()
    source, note = download_source(spec)
    if note:
        out.note(note)
    try:
        with DownloadProgressView(out, source.id) as view:
            result = download_model(source, revision=revision, force=force, listener=view)
    except KeyboardInterrupt:
        out.hint(f"Interrupted. Run `agentic-onnx onnx download {source.id}` to resume.")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    manifest = result.manifest
    if result.already_installed:
        out.note(f"{manifest.id} is already installed (commit {manifest.commit[:7]}); "
                 "pass --force to download it again.")
    else:
        out.note(f"Installed {manifest.id} ({format_bytes(manifest.size_bytes)}, "
                 f"{len(manifest.files)} files verified, commit {manifest.commit[:7]}).")
    return result


def list_command(json_output: JsonOpt = False) -> None:
    """List installed models: size on disk, EP, revision, last used, path."""
    from agentic_onnx.cli.store_view import show_installed
    from agentic_onnx.core.models.listing import installed_rows

    output.current().result(installed_rows(), show_installed)


def remove_command(model_id: ModelIdArg, yes: YesOpt = False) -> None:
    """Delete an installed model (only ever inside the store). Asks first on a terminal."""
    from agentic_onnx.core.models.removal import carry_out, plan_removal

    out, removal = output.current(), plan_removal(model_id)
    if removal.deletes_files and not yes and out.can_ask:
        if not out.confirm(f"Delete {model_id} from {removal.folder}?"):
            out.note("Nothing removed.")
            raise typer.Exit(0)
    carry_out(removal)
    out.note({"unlink": f"Unregistered {model_id}; its folder {removal.folder} was left untouched.",
              "unregister": f"Unregistered {model_id} (it was not downloaded).",
              "delete": f"Removed {model_id}."}[removal.action])


def verify_command(model_id: ModelIdArg, json_output: JsonOpt = False) -> None:
    """Re-check the SHA-256 of every file of an installed model against its manifest; for a
    model added with `onnx add --path`: its files are readable, its config valid, and it loads."""
    from agentic_onnx.core.models.linked_models import is_linked, verify_linked
    from agentic_onnx.core.models.store import verify_model

    out = output.current()
    if is_linked(model_id):
        check = verify_linked(model_id)
        out.result(check.to_json(), f"{model_id}: {check.files} files readable, loads on "
                                    f"{check.execution_provider} ({check.model.path}) OK")
        return
    manifest = verify_model(model_id)
    out.result({"id": manifest.id, "ok": True, "files": len(manifest.files),
                "size_bytes": manifest.size_bytes}, f"{manifest.id}: {len(manifest.files)} files OK")


def add_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name to use with --model.")],
    path: Annotated[Optional[Path], typer.Option("--path", metavar="DIR", help="A local onnxruntime-genai model folder.")] = None,
    repo: Annotated[Optional[str], typer.Option("--repo", metavar="ORG/NAME", help="A hub repo to download from.")] = None,
    subfolder: Annotated[str, typer.Option("--subfolder", metavar="SUB", help="The repo folder that holds genai_config.json.")] = "",
    revision: Annotated[str, typer.Option("--revision", metavar="REV", help="Branch, tag or commit.")] = "main",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing custom model of that name.")] = False,
) -> None:
    """Register a custom model: a local folder (--path) or a hub model to download (--repo)."""
    from agentic_onnx.core.models.custom_models import add_custom_model

    model = add_custom_model(name, path=path, repo=repo, subfolder=subfolder, revision=revision,
                             replace=force)
    if model.path is not None:
        output.current().note(f"Registered {name} -> {model.path}. Use it with --model {name}.")
    else:
        output.current().note(f"Registered {name} -> {model.repo}/{model.subfolder}. "
                              f"Download it with `agentic-onnx onnx download {name}`.")


def _offer_details(model_id: str) -> str:
    """` (2.7 GB; 40.1 GB free after; ~11 tok/s here)` for a catalog model, else nothing."""
    from agentic_onnx.core.models.recommend import describe_download

    details = describe_download(model_id)
    return f" ({details})" if details else ""


def resolve_for_run(spec: str | None, assume_yes: bool = False):  # noqa: ANN201
    """`run`'s and `chat`'s model folder (core.models.resolve.resolve_for_use); a known model
    that is missing is offered for download on a terminal (or fetched with --yes); otherwise
    the error carries the download command."""
    from agentic_onnx.core.errors import NotInstalledError
    from agentic_onnx.core.models.resolve import resolve_for_use

    out = output.current()
    try:
        resolution = resolve_for_use(spec)
    except NotInstalledError as error:
        if not assume_yes and not (out.can_ask and out.confirm(
                f"{error.message} Download it now{_offer_details(error.model_id)}?")):
            raise
        download_with_progress(error.model_id)
        resolution = resolve_for_use(error.model_id)
    if resolution.note:
        out.note(resolution.note)
    return resolution.folder
