"""`onnx import SOURCE --name NAME`: convert a Hugging Face checkpoint (a folder, a hub repo) or an
fp32/fp16 GGUF file into an onnxruntime-genai model in the store.

The store's installer rules hold: one writer per model (its lock), everything built in
`.partial/<name>/`, the manifest written last, then one rename into `onnx-models/<name>/`.

```
.partial/<name>/
  model/ download.json   a hub source, fetched and verified like `onnx download` (kept for a rerun)
  build/                 the builder's output: becomes onnx-models/<name>/
  cache/                 the builder's scratch folder
  builder.log            the builder's output (kept when it fails)
```

A hub source goes through core/models/download.py's staging (resume by Range, SHA-256 / git blob id
checked), so a failed or interrupted conversion never downloads it again. See docs/import.md.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentic_onnx.core.models.catalog import HubModel
from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.models.hub_client import DownloadListener, RemoteFile
from agentic_onnx.core.importing.build import LOG_FILE, BuildListener, BuildRequest, BuildResult, run_builder
from agentic_onnx.core.importing.plan import Budget, Target, budget_for, choose_target, require_memory
from agentic_onnx.core.importing.record import ImportRecord, SourceFile
from agentic_onnx.core.importing.source import (
    SOURCE_SUFFIXES,
    CheckedSource,
    SourceSpec,
    check_folder,
    check_gguf,
    classify_source,
    require_builder_packages,
)
from agentic_onnx.core.models.leftovers import sweep_leftovers
from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.models.names import check_model_name
from agentic_onnx.core.models.store import (
    Manifest,
    ManifestFile,
    check_free_space,
    delete_in_store,
    model_dir,
    now_iso,
    partial_dir,
    read_manifest,
    sha256_file,
    store_dir,
    write_manifest,
)

ORIGIN = "import"
LOCAL_REVISION = "local"


@dataclass
class ImportRequest:
    source: str
    name: str
    precision: str | None = None
    execution_provider: str | None = None
    revision: str | None = None  # hub sources only
    config_dir: Path | None = None  # GGUF sources: the folder with config.json and the tokenizer
    block_size: int | None = None
    accuracy_level: int | None = None
    force: bool = False
    # For callers that build something special (a LoRA-ready base: core/models/adapters.py): more builder
    # options, and a step run on the built folder before it is hashed and installed.
    extra_builder_options: dict[str, str] = field(default_factory=dict)
    post_build: Callable[[Path], object] | None = None


@dataclass
class ImportResult:
    manifest: Manifest
    path: Path
    build: BuildResult
    budget: Budget


class ImportListener(DownloadListener, BuildListener):
    """What an import reports (a hub download first, then the build); the CLI renders it."""

    def checked(self, source: CheckedSource, target: Target, budget: Budget) -> None: ...
    def hashing(self, files: int, total_bytes: int) -> None: ...
    def building(self, log_path: Path) -> None: ...


def import_model(request: ImportRequest, listener: ImportListener | None = None) -> ImportResult:
    """Convert and install. Every refusal (architecture, quantized GGUF, memory, disk, missing
    packages) comes before the builder starts; for a local source, before the store is touched.
    Ctrl-C stops the builder and installs nothing."""
    from agentic_onnx.core.models.download import model_lock

    listener = listener or ImportListener()
    check_model_name(request.name)
    spec = classify_source(request.source)
    if spec.kind != "hub" and request.revision:
        raise UsageError("--revision applies to hub repo sources only.", "Leave it out for a local source.")
    if spec.kind != "gguf" and request.config_dir is not None:
        raise UsageError("--config applies to .gguf sources only.", "Leave it out.")
    target = choose_target(request.precision, request.execution_provider, request.block_size,
                           request.accuracy_level)
    source = None if spec.kind == "hub" else _check_local(spec, request.config_dir)
    budget = None if source is None else _check_budget(source, target)
    require_builder_packages()
    sweep_leftovers()
    with local_files(f"import {request.name} into the model store"), model_lock(request.name, listener):
        if read_manifest(request.name) is not None and not request.force:
            raise UsageError(f"A model named {request.name!r} is already installed.",
                             "Pick another --name, or pass --force to replace it.")
        hub_commit = None
        if source is None:  # a hub repo: fetched (or resumed) first, then checked like a folder
            folder, hub_commit = fetch_checkpoint(request.name, spec.repo or "",
                                                  request.revision or "main", listener)
            source = check_folder(folder)
            budget = _check_budget(source, target)
        else:
            delete_in_store(partial_dir(request.name))  # nothing of an earlier try is reused
        assert budget is not None
        listener.checked(source, target, budget)
        return _build_and_install(request, spec, source, target, budget, hub_commit, listener)


def _check_local(spec: SourceSpec, config_dir: Path | None) -> CheckedSource:
    assert spec.path is not None
    return check_folder(spec.path) if spec.kind == "folder" else check_gguf(spec.path, config_dir)


def _check_budget(source: CheckedSource, target: Target) -> Budget:
    budget = budget_for(source.parameters, target.precision)
    require_memory(budget, target.precision)
    check_free_space(budget.output_bytes, store_dir())
    return budget


def _build_and_install(request: ImportRequest, spec: SourceSpec, source: CheckedSource,
                       target: Target, budget: Budget, hub_commit: str | None,
                       listener: ImportListener) -> ImportResult:
    partial = partial_dir(request.name)
    files = _hash_sources(source, listener)
    for leftover in ("build", "cache", LOG_FILE):
        delete_in_store(partial / leftover)
    partial.mkdir(parents=True, exist_ok=True)
    build_request = BuildRequest(
        input_path=source.input_path, config_dir=source.config_dir if source.kind == "gguf" else None,
        output_dir=partial / "build", cache_dir=partial / "cache", log_path=partial / LOG_FILE,
        precision=target.precision, execution_provider=target.execution_provider,
        extra_options={**target.extra_options, **request.extra_builder_options})
    listener.building(build_request.log_path)
    try:
        build = run_builder(build_request, listener)
    except BaseException:  # a failure or Ctrl-C: nothing half built stays; the log does
        delete_in_store(build_request.output_dir)
        delete_in_store(build_request.cache_dir)
        raise
    build.peak_rss_bytes = _peak_rss(build.peak_rss_bytes)
    if request.post_build is not None:
        request.post_build(build_request.output_dir)
    record = ImportRecord(
        source_kind=spec.kind, path=str(spec.path) if spec.path else None, repo=spec.repo,
        revision=(request.revision or "main") if spec.kind == "hub" else None, commit=hub_commit,
        config_path=str(source.config_dir) if source.kind == "gguf" else None,
        architecture=source.architecture, files=files, builder=builder_version(),
        precision=target.precision, execution_provider=target.execution_provider,
        extra_options=build_request.extra_options, build_seconds=round(build.seconds, 1),
        peak_rss_bytes=build.peak_rss_bytes)
    manifest = _install(request.name, build_request.output_dir, record)
    return ImportResult(manifest, model_dir(request.name), build, budget)


def fetch_checkpoint(name: str, repo: str, revision: str, listener: DownloadListener) -> tuple[Path, str]:
    """Download a hub checkpoint's config, tokenizer and safetensors into `.partial/<name>/model/`
    through the store's resumable, verified path. Returns (folder, commit)."""
    from agentic_onnx.core.models.download import fetch_file, Staging
    from agentic_onnx.core.models.hub_client import HubClient

    hub_model = HubModel(id=name, repo=repo, subfolder="", revision=revision, origin=ORIGIN)
    hub = HubClient(hub_model)
    commit = hub.resolve_commit(revision)
    files = checkpoint_files(hub.list_files(commit))
    staging = Staging(hub_model, commit, fresh=False)
    done = staging.bytes_present(files)
    total = sum(f.size for f in files)
    check_free_space(total - done, store_dir())
    listener.plan(files, total, done)
    for remote in files:
        fetch_file(hub, remote, commit, staging, listener)
    return staging.model, commit


def checkpoint_files(files: list[RemoteFile]) -> list[RemoteFile]:
    """What a conversion reads: configs, tokenizer, safetensors (pytorch *.bin only when there
    are no safetensors); never other formats' copies (GGUF, ONNX, images, README)."""
    has_safetensors = any(f.relative_path.endswith(".safetensors") for f in files)
    weights = (".safetensors",) if has_safetensors else (".bin",)
    return [f for f in files if "/" not in f.relative_path
            and f.relative_path.endswith(SOURCE_SUFFIXES + weights)
            and f.relative_path.lower() != "readme.md"]


def _hash_sources(source: CheckedSource, listener: ImportListener) -> list[SourceFile]:
    paths = source.files()
    listener.hashing(len(paths), sum(p.stat().st_size for p in paths))
    return [SourceFile(path=p.name if source.kind == "gguf" and p == source.input_path
                       else p.relative_to(source.config_dir).as_posix(),
                       size=p.stat().st_size, sha256=sha256_file(p)) for p in paths]


def _install(name: str, build_dir: Path, record: ImportRecord) -> Manifest:
    """Check the built folder as `run` will, write the manifest last, rename it into place."""
    open_model_folder(build_dir)  # the decoder file genai_config.json names is there
    files = [ManifestFile(path=p.relative_to(build_dir).as_posix(), size=p.stat().st_size,
                          sha256=sha256_file(p), lfs=False)
             for p in sorted(build_dir.rglob("*")) if p.is_file()]
    fingerprint = hashlib.sha256("\n".join(f"{f.path} {f.sha256}" for f in record.files).encode())
    manifest = Manifest(
        id=name, origin=ORIGIN, repo=record.repo or record.path or "", subfolder="",
        revision=record.revision or LOCAL_REVISION, commit=record.commit or fingerprint.hexdigest(),
        execution_provider=record.execution_provider, precision=record.precision, files=files,
        size_bytes=sum(f.size for f in files), downloaded_at=now_iso(), imported=record)
    write_manifest(build_dir, manifest)
    target = model_dir(name)
    delete_in_store(target)  # --force replaces the old model only now
    os.replace(build_dir, target)
    delete_in_store(partial_dir(name))
    return manifest


def builder_version() -> str:
    from agentic_onnx.core.machine.genai_build import installed_genai_builds

    builds = installed_genai_builds()
    return f"{builds[0][0].distribution} {builds[0][1]}" if builds else "onnxruntime-genai (unknown)"


def _peak_rss(polled: int | None) -> int | None:
    """The larger of the polled peak and the kernel's own record for waited-for children
    (Linux reports KiB, macOS bytes), which sees a peak between two polls."""
    if platform.system() not in ("Linux", "Darwin"):
        return polled
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak *= 1 if platform.system() == "Darwin" else 1024
    return max(polled or 0, peak) or None
