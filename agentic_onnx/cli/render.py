"""The only module that knows Rich: live Markdown, tables, stats, messages.

Data goes to stdout; warnings, hints, progress and status go to stderr, so `cmd > file` and
`cmd | jq` stay clean. Rich drops colour when the stream is not a terminal or NO_COLOR is set.
"""

from __future__ import annotations

import json
import sys
import time
from functools import lru_cache
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text


@lru_cache(maxsize=1)
def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


@lru_cache(maxsize=1)
def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line


def error(message: str) -> None:
    stderr_console().print(Text("Error: ", style="bold red") + Text(message))


def warning(message: str) -> None:
    stderr_console().print(Text("Warning: ", style="yellow") + Text(message))


def note(message: str) -> None:
    stderr_console().print(Text(message, style="dim"))


def print_json(data: Any) -> None:
    """One JSON object on stdout, never coloured, always parseable."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One compact JSON object on one line of stdout (JSON Lines: one tool call per line)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    stdout_console().print(table)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


class PlainStream:
    """Piped output: the text exactly as generated, flushed per chunk, no escape codes."""

    def __init__(self) -> None:
        self._last = ""

    def __enter__(self) -> PlainStream:
        return self

    def add(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        self._last = text[-1:] or self._last

    def __exit__(self, *exc: object) -> None:
        if self._last and self._last != "\n":  # end the answer's line, never add a blank one
            sys.stdout.write("\n")
            sys.stdout.flush()


class MarkdownBlocks:
    """Splits streamed Markdown into finished blocks and the block still being written.

    A block ends at a blank line outside a code fence, or at a closing fence. Only complete
    lines are scanned, once each, so the cost per chunk does not grow with the answer.
    """

    def __init__(self) -> None:
        self.text = ""
        self._committed = 0  # text[:_committed] has been handed out as finished blocks
        self._scanned = 0  # text[:_scanned] is whole lines already looked at
        self._in_fence = False

    def add(self, chunk: str) -> list[str]:
        """Append `chunk`; return the blocks it finished (possibly none)."""
        self.text += chunk
        boundaries = []
        while (newline := self.text.find("\n", self._scanned)) >= 0:
            line = self.text[self._scanned:newline].strip()
            self._scanned = newline + 1
            if line.startswith(("```", "~~~")):
                self._in_fence = not self._in_fence
                if not self._in_fence:
                    boundaries.append(self._scanned)
            elif not line and not self._in_fence:
                boundaries.append(self._scanned)
        finished = []
        for boundary in boundaries:
            block = self.text[self._committed:boundary].strip("\n")
            self._committed = boundary
            if block.strip():
                finished.append(block)
        return finished

    @property
    def tail(self) -> str:
        return self.text[self._committed:].strip("\n")


class LiveMarkdownStream:
    """Terminal output: Markdown rendered live. Finished blocks are printed once, above a small
    live region that re-renders only the block being written (and the status line), at most
    every 0.1 s and never more often than 66x its own render cost, so rendering stays near 1.5%
    of one core however long the answer grows; a block taller than the terminal is drawn from
    its last screenful."""

    MIN_INTERVAL_S = 0.1
    MAX_RENDER_SHARE = 0.015

    def __init__(self, show_status: bool, console: Console | None = None) -> None:
        self._console = console or stdout_console()
        self._blocks = MarkdownBlocks()
        self._show_status = show_status
        self._live = Live(console=self._console, auto_refresh=False, transient=True,
                          vertical_overflow="visible")
        self._printed_any = False
        self._chunks = 0
        self._started = 0.0
        self._next_refresh = 0.0

    def __enter__(self) -> LiveMarkdownStream:
        self._started = time.perf_counter()
        self._live.start()
        return self

    def add(self, text: str) -> None:
        self._chunks += 1
        for block in self._blocks.add(text):
            self._print_block(block)
        now = time.perf_counter()
        if now >= self._next_refresh:
            self._live.update(self._live_view(now), refresh=True)
            cost = time.perf_counter() - now
            self._next_refresh = now + max(self.MIN_INTERVAL_S, cost / self.MAX_RENDER_SHARE)

    def __exit__(self, *exc: object) -> None:
        self._live.update(Text(""), refresh=False)
        self._live.stop()
        if self._blocks.tail.strip():
            self._print_block(self._blocks.tail)

    def _print_block(self, block: str) -> None:
        if self._printed_any:
            self._console.print()
        self._console.print(Markdown(block))
        self._printed_any = True

    def _visible_tail(self) -> str:
        """The unfinished block, cut to what fits on the screen (a code fence's opening line is
        kept, so the visible part still renders as code): rendering what scrolled away would
        cost time and show nothing."""
        lines = self._blocks.tail.split("\n")
        room = max(self._console.size.height - 2, 4)
        if len(lines) <= room:
            return self._blocks.tail
        opener = lines[0] if lines[0].lstrip().startswith(("```", "~~~")) else None
        kept = lines[-(room - 1):] if opener else lines[-room:]
        return "\n".join([opener, *kept] if opener else kept)

    def _live_view(self, now: float) -> Group:
        parts: list[Any] = []
        tail = self._visible_tail()
        if tail.strip():
            parts.append(Markdown(tail))
        if self._show_status:
            elapsed = max(now - self._started, 1e-9)
            parts.append(Text(f"{self._chunks} tokens · {self._chunks / elapsed:.1f} tokens/s",
                              style="dim"))
        return Group(*parts)


def verbose_stats(prompt_tokens: int, completion_tokens: int, timings: Any) -> None:
    """Ollama's `--verbose` statistics, on stderr."""
    ttft_s = (timings.ttft_ms or 0.0) / 1000
    rows = [
        ("total duration", _duration(timings.total_s + timings.load_s)),
        ("load duration", _duration(timings.load_s)),
        ("prompt eval count", f"{prompt_tokens} token(s)"),
        ("prompt eval duration", _duration(ttft_s)),
        ("prompt eval rate", _rate(prompt_tokens / ttft_s if ttft_s else None)),
        ("eval count", f"{completion_tokens} token(s)"),
        ("eval duration", _duration(max(timings.total_s - ttft_s, 0.0))),
        ("eval rate", _rate(timings.decode_tokens_per_s)),
    ]
    console = stderr_console()
    for name, value in rows:
        console.print(f"{name + ':':<22}{value}")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} tokens/s"


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table
