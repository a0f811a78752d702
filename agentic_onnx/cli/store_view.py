"""Human rendering for the store commands: the catalog and installed-model tables, and the
download progress (a Rich bar with bytes, rate and ETA on a terminal; plain lines otherwise).
Everything goes through the output object: the tables are the commands' data (stdout), the
rest goes to stderr."""

from __future__ import annotations

import sys
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from agentic_onnx.cli.output import Output
from agentic_onnx.cli.render import Column
from agentic_onnx.core.machine.execution_provider import EP_LABELS
from agentic_onnx.core.machine.speed_estimate import format_rate
from agentic_onnx.core.models.download import DownloadListener, RemoteFile
from agentic_onnx.core.models.store import format_bytes


def show_catalog(out: Output, rows: list[dict[str, Any]]) -> None:
    """`onnx models`: the chat models, the embedding models (if any), why some do not fit."""
    out.table(catalog_table(rows))
    if any(row.get("kind") == "embedding" for row in rows):
        out.table(embedding_table(rows))
    for line in fit_notes(rows):
        out.paragraph(line)


def show_installed(out: Output, rows: list[dict[str, Any]]) -> None:
    """`onnx list`: the table, and a warning per linked model that cannot be used as it is."""
    if not rows:
        out.hint("No models installed. Try `agentic-onnx onnx models`, then "
                 "`agentic-onnx onnx download ID`.")
        return
    out.table(installed_table(out, rows))
    for row in rows:
        if row.get("problem"):
            out.warning(f"{row['id']}: {row['problem']} ({row['path']}).")


def catalog_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Models (* recommended for this machine; t/s: estimated decode tokens/s)",
                  title_justify="left", box=None, pad_edge=False, collapse_padding=True)
    table.add_column("id", no_wrap=True)  # compact headers: the table fits 80 columns when piped
    for column, justify in (("EP", "left"), ("quant", "left"), ("size", "right"),
                            ("t/s", "right"), ("ctx", "right"), ("tools", "center"),
                            ("vision", "center"), ("inst", "center"), ("fits", "center")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in (r for r in rows if r.get("kind") != "embedding"):  # embedding_table has those
        marker = "* " if row.get("recommended") else "  "
        size = format_bytes(row["size_bytes"]) if row.get("size_bytes") else "?"
        context = f"{row['context_length'] // 1024}k" if row.get("context_length") else "?"
        fits = {True: "yes", False: "no", None: "?"}[row["fits"]]
        table.add_row(marker + row["id"], row["execution_provider"] or "?",  # as `-e` spells it
                      row["precision"] or "?", size, _estimate(row), context,
                      _capability(row, "tools"),
                      _capability(row, "vision"),
                      "yes" if row["installed"] else "-", fits)
    return table


def _estimate(row: dict[str, Any]) -> str:
    """~6 (tokens/s, core/machine/speed_estimate.py); - where there is none (no usable EP, custom)."""
    rate = row.get("estimated_tokens_per_s")
    return "-" if rate is None else f"~{format_rate(rate)}"


def embedding_table(rows: list[dict[str, Any]]) -> Table:
    """The catalog's embedding models (kind `embedding`, for `agentic-onnx embed`)."""
    table = Table(title="Embedding models (agentic-onnx embed)", title_justify="left", box=None,
                  pad_edge=False)
    table.add_column("id", no_wrap=True)
    for column in ("dim", "max tok", "pooling", "size", "inst", "fits"):
        justify = "left" if column == "pooling" else "right"
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in (r for r in rows if r.get("kind") == "embedding"):
        facts = row["embedding"]
        table.add_row("  " + row["id"], str(facts["dimension"]), str(facts["max_tokens"]),
                      facts["pooling"], format_bytes(row["size_bytes"]),
                      "yes" if row["installed"] else "-",
                      {True: "yes", False: "no", None: "?"}[row["fits"]])
    return table


def fit_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Why models do not fit, one line per reason (the table only says yes/no, to stay narrow)."""
    from agentic_onnx.core.models.listing import unfit_by_reason

    return [f"Does not fit ({reason}): {', '.join(ids)}"
            for reason, ids in unfit_by_reason(rows).items()]


def _capability(row: dict[str, Any], name: str) -> str:
    """yes / - from the catalog's capabilities (tools: tool calling done well; vision: images);
    ? for custom models, which have none."""
    if "capabilities" not in row:
        return "?"
    return "yes" if name in row["capabilities"] else "-"


def installed_table(out: Output, rows: list[dict[str, Any]]) -> Table:
    """Installed and linked models; low-value columns give way to fit the terminal."""
    columns = [Column("id", "left"), Column("EP", "left"), Column("size"),
               Column("revision", "left", drop_order=2), Column("last used", "left", drop_order=1),
               Column("path", "left", drop_order=3)]
    table_rows = []
    for row in rows:
        if row.get("linked"):
            revision, used = "linked", "-"
        else:
            revision = f"{row['revision']} ({row['commit'][:7]})"
            used = (row["last_used_at"] or "never")[:16].replace("T", " ")
        size = "?" if row["size_bytes"] is None else format_bytes(row["size_bytes"])
        table_rows.append([row["id"], EP_LABELS.get(row["execution_provider"] or "", "?"), size,
                           revision, used, row["path"]])
        for adapter in row.get("adapters", []):  # under its base; run it with --adapter NAME
            table_rows.append([f"  + {adapter['name']}", "adapter",
                               format_bytes(adapter["size_bytes"]), "-", "-", adapter["path"]])
    return out.fitted_table("Installed models", columns, table_rows)


class DownloadProgressView(DownloadListener):
    """Renders a download: one bar over all bytes on a terminal, plain lines when piped."""

    def __init__(self, out: Output, model_id: str) -> None:
        self.out = out
        self.model_id = model_id
        self.live = sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> DownloadProgressView:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def waiting_for_lock(self, model_id: str) -> None:
        self.out.note(f"Another download of {model_id} is running; waiting for it to finish...")

    def plan(self, files: list[RemoteFile], total_bytes: int, done_bytes: int) -> None:
        resumed = f", resuming with {format_bytes(done_bytes)} already here" if done_bytes else ""
        self.out.note(f"Downloading {self.model_id}: {len(files)} files, "
                      f"{format_bytes(total_bytes)}{resumed}.")
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self.out.stderr_console,
            )
            self._task = self._progress.add_task(self.model_id, total=total_bytes,
                                                 completed=done_bytes)
            self._progress.start()

    def file_started(self, file: RemoteFile, resume_from: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=file.relative_path[-40:])
        elif file.size >= 10_000_000 or resume_from:
            where = f" from {format_bytes(resume_from)}" if resume_from else ""
            self.out.note(f"  {file.relative_path} ({format_bytes(file.size)}){where}")

    def advance(self, nbytes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, nbytes)

    def retrying(self, file: RemoteFile, error: str) -> None:
        self.out.warning(f"{error} Resuming {file.relative_path}...")
