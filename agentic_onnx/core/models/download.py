"""Download one model variant from the Hugging Face Hub into the store: resumable, verified, atomic.

huggingface_hub does the talking (endpoint and `HF_ENDPOINT`, token and `HF_TOKEN`, repo info,
the recursive tree listing with LFS hashes, the per-file HEAD, its configured HTTP session and
its typed errors). We own the bytes on disk: `hf_hub_download` stages each file in a
process-unique temp file that it deletes on any failure, so a rerun could never continue where
an interrupted one stopped. Here each file grows in `.partial/<id>/model/<path>.incomplete`, a
rerun asks for the rest with an HTTP Range request, and every finished file is hashed (SHA-256
against the hub's LFS oid, or the git blob id for small files) before it counts as done.
See docs/store.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from agentic_onnx.core.models import download_rate
from agentic_onnx.core.models.catalog import HubModel
from agentic_onnx.core.errors import InvalidModelError, StoreError, VerificationError
from agentic_onnx.core.models.hub_client import (  # DownloadListener: re-exported for the CLI
    DownloadListener,
    HubClient,
    RemoteFile,
)
from agentic_onnx.core.models.leftovers import sweep_leftovers
from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.models.model_folder import GENAI_CONFIG, open_model_folder
from agentic_onnx.core.models.names import check_model_name
from agentic_onnx.core.models.store import (
    MANIFEST,
    Manifest,
    ManifestFile,
    check_free_space,
    delete_in_store,
    git_blob_sha1,
    lock_path,
    model_dir,
    now_iso,
    partial_dir,
    read_manifest,
    safe_join,
    sha256_file,
    store_dir,
    write_json_atomic,
    write_manifest,
)

INCOMPLETE_SUFFIX = ".incomplete"
STATE_FILE = "download.json"


@dataclass
class DownloadResult:
    manifest: Manifest
    path: Path
    already_installed: bool = False
    downloaded_bytes: int = 0
    resumed_bytes: int = 0  # bytes that an earlier, interrupted run had already fetched


class _State(BaseModel):
    """`.partial/<id>/download.json`: which commit the staged files belong to, which are done."""

    repo: str
    subfolder: str
    commit: str
    done: dict[str, str] = {}  # relative path -> sha256


def download_model(source: HubModel, *, revision: str | None = None, force: bool = False,
                   listener: DownloadListener | None = None) -> DownloadResult:
    """Install `source` into the store (or say it already is). Safe to interrupt and rerun.
    A read-only or full home is a LocalFileError naming the path (what arrived is kept)."""
    listener = listener or DownloadListener()
    check_model_name(source.id)
    sweep_leftovers()
    with local_files(f"write {source.id} into the model store"):
        return _download_locked(source, revision or source.revision, force, listener)


def _download_locked(source: HubModel, requested: str, force: bool,
                     listener: DownloadListener) -> DownloadResult:
    with model_lock(source.id, listener):
        installed = read_manifest(source.id)
        if installed and not force and requested in (installed.revision, installed.commit):
            return DownloadResult(installed, model_dir(source.id), already_installed=True)
        hub = HubClient(source)
        commit = hub.resolve_commit(requested)
        files = hub.list_files(commit)
        _require_genai_model(source, files)
        staging = Staging(source, commit, fresh=force)
        done_bytes = staging.bytes_present(files)
        check_free_space(sum(f.size for f in files) - done_bytes, store_dir())
        listener.plan(files, sum(f.size for f in files), done_bytes)
        started = time.perf_counter()
        for remote in files:
            fetch_file(hub, remote, commit, staging, listener)
        download_rate.record(staging.fetched_bytes, time.perf_counter() - started)
        manifest = _install(source, requested, commit, files, staging)
    return DownloadResult(manifest, model_dir(source.id), downloaded_bytes=staging.fetched_bytes,
                          resumed_bytes=done_bytes)


@contextmanager
def model_lock(model_id: str, listener: DownloadListener) -> Iterator[None]:
    """One writer per model: a second download of the same model waits, then finds it installed."""
    from filelock import FileLock, Timeout

    path = lock_path(model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        listener.waiting_for_lock(model_id)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _require_genai_model(source: HubModel, files: list[RemoteFile]) -> None:
    names = {f.relative_path for f in files}
    if source.kind == "embedding":
        from agentic_onnx.core.embeddings.store_check import require_embedding_files

        require_embedding_files(source.id, source.repo, names)
    elif GENAI_CONFIG not in names:
        where = f"{source.repo}/{source.subfolder}" if source.subfolder else source.repo
        raise InvalidModelError(
            f"{where} holds no {GENAI_CONFIG}: it is not an onnxruntime-genai model "
            "(Transformers.js and plain ONNX exports cannot run here). Nothing was downloaded.",
            "Pick the repo subfolder that holds genai_config.json (see docs/catalog.md).",
        )
    if MANIFEST in names:
        raise StoreError(f"{source.repo} has its own {MANIFEST}, which the store reserves.",
                         "Download it manually and register it with `onnx add NAME --path DIR`.")


class Staging:
    """`.partial/<id>/`: `model/` holds the files as they will be installed, `download.json` the
    progress. Kept across runs while the commit stays the same."""

    def __init__(self, source: HubModel, commit: str, fresh: bool) -> None:
        self.root = partial_dir(source.id)
        self.model = self.root / "model"
        self.fetched_bytes = 0
        state = None if fresh else self._load()
        if state is None or state.commit != commit or state.repo != source.repo \
                or state.subfolder != source.subfolder:
            delete_in_store(self.root)
            state = _State(repo=source.repo, subfolder=source.subfolder, commit=commit)
        self.state = state
        self.model.mkdir(parents=True, exist_ok=True)
        self.save()

    def _load(self) -> _State | None:
        try:
            return _State.model_validate_json((self.root / STATE_FILE).read_bytes())
        except (OSError, ValidationError, ValueError):
            return None

    def save(self) -> None:
        write_json_atomic(self.root / STATE_FILE, self.state.model_dump(mode="json"))

    def final_path(self, remote: RemoteFile) -> Path:
        return safe_join(self.model, remote.relative_path)

    def incomplete_path(self, remote: RemoteFile) -> Path:
        final = self.final_path(remote)
        return final.with_name(final.name + INCOMPLETE_SUFFIX)

    def is_done(self, remote: RemoteFile) -> bool:
        final = self.final_path(remote)
        return (remote.relative_path in self.state.done and final.is_file()
                and final.stat().st_size == remote.size)

    def bytes_present(self, files: list[RemoteFile]) -> int:
        total = 0
        for remote in files:
            if self.is_done(remote):
                total += remote.size
            elif (partial := self.incomplete_path(remote)).is_file():
                total += min(partial.stat().st_size, remote.size)
        return total


def fetch_file(hub: HubClient, remote: RemoteFile, commit: str, staging: Staging,
               listener: DownloadListener) -> None:
    """One file into `staging`, resumed and hash-checked (also what `onnx import` fetches with)."""
    if staging.is_done(remote):
        return
    incomplete = staging.incomplete_path(remote)
    incomplete.parent.mkdir(parents=True, exist_ok=True)
    if incomplete.is_file() and incomplete.stat().st_size > remote.size:
        incomplete.unlink()
    resume_from = incomplete.stat().st_size if incomplete.is_file() else 0
    listener.file_started(remote, resume_from)
    hub.transfer(remote, commit, incomplete, listener)
    staging.fetched_bytes += remote.size - resume_from
    listener.verifying(remote)
    digest = _verified_sha256(incomplete, remote)
    os.replace(incomplete, staging.final_path(remote))
    staging.state.done[remote.relative_path] = digest
    staging.save()


def _verified_sha256(path: Path, remote: RemoteFile) -> str:
    """The file's SHA-256, after checking it against the hub's metadata. A mismatch deletes the
    file (a rerun fetches it again) and raises: nothing gets installed."""
    digest = sha256_file(path)
    if remote.lfs_sha256 is not None:
        ok, expected, got = digest == remote.lfs_sha256, remote.lfs_sha256, digest
        kind = "SHA-256"
    else:
        got = git_blob_sha1(path)
        ok, expected, kind = got == remote.blob_id, remote.blob_id, "git blob id"
    if not ok:
        delete_in_store(path)
        raise VerificationError(
            f"{remote.path_in_repo} failed verification: its {kind} is {got[:16]}..., the hub "
            f"says {expected[:16]}.... The corrupt file was discarded; nothing was installed.",
            "Run the same command again to re-download it.",
        )
    return digest


def _install(source: HubModel, requested: str, commit: str, files: list[RemoteFile],
             staging: Staging) -> Manifest:
    """Validate the staged folder, write the manifest last, and rename it into the store."""
    if source.kind == "embedding":
        from agentic_onnx.core.embeddings.store_check import check_staged_embedding

        folder = check_staged_embedding(source.id, staging.model)  # graph and tokenizer are there
    else:
        folder = open_model_folder(staging.model)  # the decoder file the config names must be there
    manifest = Manifest(
        id=source.id, origin=source.origin, repo=source.repo, subfolder=source.subfolder,
        revision=requested, commit=commit,
        execution_provider=source.execution_provider or getattr(folder, "built_for", "cpu"),
        kind=source.kind,
        precision=source.precision, size_bytes=sum(f.size for f in files),
        files=[ManifestFile(path=f.relative_path, size=f.size, sha256=staging.state.done[f.relative_path],
                            lfs=f.lfs_sha256 is not None) for f in files],
        downloaded_at=now_iso(),
    )
    write_manifest(staging.model, manifest)
    target = model_dir(source.id)
    delete_in_store(target)  # a --force re-download replaces the old copy only now
    os.replace(staging.model, target)
    delete_in_store(staging.root)
    return manifest
