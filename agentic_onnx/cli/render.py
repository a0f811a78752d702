"""The output object's views (cli/output.py makes and feeds them): the live Markdown and plain
answer streams, and the table builders the *_view modules use.

Nothing here makes a console: the output object hands its own to the views, so each invocation
writes to the streams it was started with. Rich drops colour when the stream is not a terminal
or NO_COLOR is set.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text


class PlainStream:
    """Piped output: the text exactly as generated, flushed per chunk, no escape codes.
    `write` puts text on stdout (the output object's `text`)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._last = ""

    def __enter__(self) -> PlainStream:
        return self

    def add(self, text: str) -> None:
        self._write(text)
        self._last = text[-1:] or self._last

    def __exit__(self, *exc: object) -> None:
        if self._last and self._last != "\n":  # end the answer's line, never add a blank one
            self._write("\n")


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
    # Never wait longer than this between redraws: a one-off slow render (the first code block
    # imports the syntax highlighter) must not freeze the text and the status for seconds.
    MAX_INTERVAL_S = 0.5
    clock = staticmethod(time.perf_counter)

    def __init__(self, show_status: bool, console: Console) -> None:
        self._console = console
        self._blocks = MarkdownBlocks()
        self._show_status = show_status
        self._live = Live(console=self._console, auto_refresh=False, transient=True,
                          vertical_overflow="visible")
        self._printed_any = False
        self._chunks = 0
        self._started = 0.0
        self._next_refresh = 0.0
        self._costs: deque[float] = deque(maxlen=5)  # recent render costs: the median paces

    def __enter__(self) -> LiveMarkdownStream:
        self._started = self.clock()
        self._live.start()
        return self

    def add(self, text: str) -> None:
        self._chunks += 1
        for block in self._blocks.add(text):
            self._print_block(block)
        now = self.clock()
        if now >= self._next_refresh:
            self._live.update(self._live_view(now), refresh=True)
            self._costs.append(self.clock() - now)
            self._next_refresh = now + self.pause(sorted(self._costs)[len(self._costs) // 2])

    @classmethod
    def pause(cls, render_cost_s: float) -> float:
        """Seconds until the next redraw: rendering may take MAX_RENDER_SHARE of the time, but
        the view redraws at least every MAX_INTERVAL_S and at most every MIN_INTERVAL_S."""
        wanted = max(cls.MIN_INTERVAL_S, render_cost_s / cls.MAX_RENDER_SHARE)
        return min(cls.MAX_INTERVAL_S, wanted)

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


@dataclass(frozen=True)
class Column:
    """A column of a `fitted_table`. `drop_order`: None keeps it always; otherwise columns are
    left out lowest number first while the table is wider than the terminal."""

    header: str
    justify: str = "right"
    drop_order: int | None = None


def fitted_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]],
                 width: int | None = None, console: Console | None = None) -> Table:
    """A compact table (no box, as `onnx models`) that fits `width` (default: `console`'s, the
    terminal's or 80 when piped): low-value columns are left out until it does, and a caption
    says which (`--json` has everything)."""
    console = console or Console(highlight=False)
    width = width or console.width
    shown = list(range(len(columns)))
    while True:
        table = _compact_table(title, [columns[i] for i in shown], [[row[i] for i in shown]
                                                                     for row in rows])
        droppable = [i for i in shown if columns[i].drop_order is not None]
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        if natural <= width or not droppable:
            break
        shown.remove(min(droppable, key=lambda i: columns[i].drop_order))  # type: ignore[arg-type, return-value]
    hidden = [column.header for i, column in enumerate(columns) if i not in shown]
    if hidden:
        table.caption = f"Not shown to fit {width} columns: {', '.join(hidden)} (see --json)."
        table.caption_justify = "left"
    return table


def _compact_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    return table


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table
