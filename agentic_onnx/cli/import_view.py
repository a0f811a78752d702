"""Rendering of `onnx import`: a hub download's bar, then the builder's stage and elapsed time."""

from __future__ import annotations

import sys
from pathlib import Path

from agentic_onnx.cli.output import Output
from agentic_onnx.cli.store_view import DownloadProgressView
from agentic_onnx.core.importing.importer import ImportListener
from agentic_onnx.core.models.store import format_bytes


class ImportProgressView(ImportListener):
    """A hub download's bar (the download view), then the build's stage and elapsed time:
    a transient status line on a terminal, one line per stage when stderr is not one."""

    def __init__(self, out: Output, name: str) -> None:
        self.out = out
        self.name = name
        self.live = sys.stderr.isatty()
        self._download = DownloadProgressView(out, name)
        self._status = None
        self._stage = "starting"
        self._last_plain = ""

    def __enter__(self) -> ImportProgressView:
        return self

    def __exit__(self, *exc: object) -> None:
        self._download.__exit__(*exc)
        if self._status is not None:
            self._status.stop()

    # the download (hub sources)
    def waiting_for_lock(self, model_id: str) -> None:
        self.out.note(f"Another import or download of {model_id} is running; waiting for it...")

    def plan(self, files, total_bytes, done_bytes):  # noqa: ANN001, ANN201 - DownloadListener's
        self._download.plan(files, total_bytes, done_bytes)

    def file_started(self, file, resume_from):  # noqa: ANN001, ANN201
        self._download.file_started(file, resume_from)

    def advance(self, nbytes):  # noqa: ANN001, ANN201
        self._download.advance(nbytes)

    def retrying(self, file, error):  # noqa: ANN001, ANN201
        self._download.retrying(file, error)

    # the checks and the build
    def checked(self, source, target, budget) -> None:  # noqa: ANN001
        self._download.__exit__(None, None, None)
        count = budget.parameters
        size = f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M"
        self.out.note(f"Converting {source.architecture} ({size} parameters, "
                      f"{source.kind}) to {target.precision} for {target.execution_provider}: "
                      f"about {format_bytes(budget.peak_memory_bytes)} of memory "
                      f"({format_bytes(budget.available_memory_bytes)} available).")

    def hashing(self, files: int, total_bytes: int) -> None:
        if total_bytes > 1_000_000_000:
            self.out.note(f"Hashing the source ({files} files, {format_bytes(total_bytes)})...")

    def building(self, log_path: Path) -> None:
        self.out.note(f"Running the model builder (log: {log_path}).")
        if self.live:
            self._status = self.out.stderr_console.status(self._status_text(0.0))
            self._status.start()

    def stage(self, stage: str, elapsed_s: float) -> None:
        self._stage = stage
        if self.live:
            return
        plain = "reading layers" if stage.startswith("reading layer ") else stage
        if plain != self._last_plain:
            self._last_plain = plain
            self.out.note(f"  [{elapsed_s:5.0f} s] {plain}")

    def tick(self, elapsed_s: float) -> None:
        if self._status is not None:
            self._status.update(self._status_text(elapsed_s))

    def _status_text(self, elapsed_s: float) -> str:
        return f"Converting {self.name}: {self._stage} ({elapsed_s:.0f} s)"

