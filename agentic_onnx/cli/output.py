"""The one output object (the `hf` CLI's `out`): every result, table, message and live answer
goes through it, and it renders each for the mode set once per invocation.

- human: stdout is a terminal. Rich tables, live Markdown, colour unless NO_COLOR.
- plain: stdout is a pipe. No markup, stable text: the answer exactly as generated.
- json: `--json`. A command's result is one JSON object on stdout (or, when the command fails,
  it travels inside the error object cli/failures.py prints).

Data goes to stdout; warnings, hints, notes, progress and errors go to stderr, so `cmd > file`
and `cmd | jq` stay clean. Consoles are made per object, and an object per invocation
(`start`, called by cli/main.py), so a test that calls `main(argv)` with redirected streams
captures everything. Only the standard library is imported here at module level: cli/main.py
prints a cached `--help` through this module without importing Rich or Typer.
"""

from __future__ import annotations

import json as json_module
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from agentic_onnx.cli.render import Column, LiveMarkdownStream, PlainStream

# How a result is shown to a person: a line of text, or a function that draws it.
HumanView = Union[str, Callable[["Output", Any], object], None]


class Output:
    """Where and how a command's output is written. `json` is set by `--json` (cli/options.py)."""

    def __init__(self, json: bool = False, stdout_console: Console | None = None) -> None:
        self.json = json
        self._stdout_console = stdout_console
        self._stderr_console: Console | None = None

    @classmethod
    def to_file(cls, handle: Any, width: int = 120) -> Output:
        """An object whose data goes to an open text file (no colour, a fixed width):
        `onnx benchmark --output FILE` writes the terminal's tables there."""
        from rich.console import Console

        return cls(stdout_console=Console(file=handle, width=width, no_color=True, highlight=False))

    # -- the mode -------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """json, human (stdout is a terminal) or plain (it is not)."""
        if self.json:
            return "json"
        return "human" if self.terminal else "plain"

    @property
    def terminal(self) -> bool:
        """stdout is a terminal (human output), not a pipe or a file (plain)."""
        return sys.stdout.isatty()

    @property
    def stdout_console(self) -> Console:
        if self._stdout_console is None:
            from rich.console import Console

            self._stdout_console = Console(highlight=False, soft_wrap=False)
        return self._stdout_console

    @property
    def stderr_console(self) -> Console:
        """For progress bars and status lines (Rich draws them on stderr)."""
        if self._stderr_console is None:
            from rich.console import Console

            self._stderr_console = Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line
        return self._stderr_console

    @property
    def unicode(self) -> bool:
        """Whether stdout takes block characters (else an ASCII fallback is drawn)."""
        return (self.stdout_console.encoding or "").lower().startswith("utf")

    # -- data, on stdout ------------------------------------------------------------------------

    def result(self, data: Any, human: HumanView = None, *, failure: BaseException | None = None) -> None:
        """A command's result, once: `data` (JSON-able) with `--json`, else `human` (a line, or
        `human(out, data)`). With `failure`, the command fails after showing it; with `--json`
        the data goes inside the error object instead, so stdout holds one object. `data` may
        be a function that builds it, when building costs and only `--json` needs it."""
        if self.json:
            data = data() if callable(data) else data
            if failure is None:
                self.json_value(data)
            else:
                failure.details.update(data)  # type: ignore[attr-defined]
        elif isinstance(human, str):
            self.line(human)
        elif human is not None:
            human(self, data)
        if failure is not None:
            raise failure

    def json_value(self, data: Any) -> None:
        """One JSON object on stdout, never coloured, always parseable."""
        self.text(json_module.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def json_line(self, data: Any) -> None:
        """One compact JSON object on one line of stdout (JSON Lines: one tool call per line)."""
        self.text(json_module.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")

    def line(self, text: str) -> None:
        """A line of data as it is (a path, `OK: ...`)."""
        self.text(text + "\n")

    def text(self, text: str) -> None:
        """Text on stdout exactly as given (vectors, CSV, a recorded --help), flushed."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def table(self, table: RenderableType) -> None:
        """A Rich table (or other renderable) laid out for the terminal, 80 columns when piped."""
        self.stdout_console.print(table)

    def paragraph(self, text: str) -> None:
        """Text wrapped to the console's width, without markup (a note that belongs to a table)."""
        self.stdout_console.print(text, markup=False, highlight=False)

    def fitted_table(self, title: str, columns: Sequence[Column],
                     rows: Sequence[Sequence[str]]) -> Table:
        """A compact table that fits stdout's width (cli/render.py's fitted_table)."""
        from agentic_onnx.cli.render import fitted_table

        return fitted_table(title, columns, rows, console=self.stdout_console)

    # -- the live answer ------------------------------------------------------------------------

    def stream(self) -> LiveMarkdownStream | PlainStream:
        """The view a streamed answer is written into: live Markdown on a terminal (a status
        line too when stderr is one), the text as generated when piped."""
        from agentic_onnx.cli.render import LiveMarkdownStream, PlainStream

        if self.terminal:
            return LiveMarkdownStream(show_status=sys.stderr.isatty(), console=self.stdout_console)
        return PlainStream(self.text)

    def answer(self, text: str) -> None:
        """A finished answer, as the plain view writes it (its line ended, never a blank one)."""
        from agentic_onnx.cli.render import PlainStream

        with PlainStream(self.text) as view:
            view.add(text)

    # -- messages, on stderr --------------------------------------------------------------------

    def error(self, message: str) -> None:
        from rich.text import Text

        self.stderr_console.print(Text("Error: ", style="bold red") + Text(message))

    def warning(self, message: str) -> None:
        from rich.text import Text

        self.stderr_console.print(Text("Warning: ", style="yellow") + Text(message))

    def note(self, message: str) -> None:
        """What happened, or is about to (dim)."""
        from rich.text import Text

        self.stderr_console.print(Text(message, style="dim"))

    def hint(self, message: str) -> None:
        """What to run next (drawn as a note)."""
        self.note(message)

    def progress(self, message: str) -> None:
        """A progress line: a note for people, nothing with `--json` (a script reads stdout)."""
        if not self.json:
            self.note(message)

    def message(self, text: str) -> None:
        """A line on stderr exactly as given (a SystemExit's text)."""
        self._stderr(f"{text}\n")

    def traceback(self, exception: BaseException) -> None:
        """`--debug`: the full traceback, before the one-line error."""
        import traceback

        traceback.print_exception(exception)

    def stats(self, rows: Sequence[tuple[str, str]]) -> None:
        """Aligned `name: value` lines (`--verbose` statistics)."""
        for name, value in rows:
            self.stderr_console.print(f"{name + ':':<22}{value}")

    def verbose_stats(self, prompt_tokens: int, completion_tokens: int, timings: Any) -> None:
        """Ollama's `--verbose` statistics. Prompt eval runs to the first token (Ollama's and
        llama.cpp's meaning); the first visible text can come later (a tool call, a stop string
        held back), so it has a line of its own."""
        first_ms = timings.first_token_ms if timings.first_token_ms is not None else timings.ttft_ms
        prefill_s = (first_ms or 0.0) / 1000
        self.stats([
            ("total duration", _duration(timings.total_s + timings.load_s)),
            ("load duration", _duration(timings.load_s)),
            ("prompt eval count", f"{prompt_tokens} token(s)"),
            ("prompt eval duration", _duration(prefill_s)),
            ("prompt eval rate", _rate(prompt_tokens / prefill_s if prefill_s else None)),
            ("first visible text",
             "n/a" if timings.ttft_ms is None else _duration(timings.ttft_ms / 1000)),
            ("eval count", f"{completion_tokens} token(s)"),
            ("eval duration", _duration(max(timings.total_s - prefill_s, 0.0))),
            ("eval rate", _rate(timings.decode_tokens_per_s)),
        ])

    # -- a transient status line on stderr (the loading indicator) ------------------------------

    def transient(self, text: str) -> None:
        """Draw `text` over the current stderr line (a terminal's)."""
        self._stderr(f"{_CLEAR}{text}")

    def clear_transient(self) -> None:
        self._stderr(_CLEAR)

    def _stderr(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    # -- questions ------------------------------------------------------------------------------

    @property
    def can_ask(self) -> bool:
        """A person can answer a question: stdin and stderr are a terminal."""
        return sys.stdin.isatty() and sys.stderr.isatty()

    def confirm(self, question: str) -> bool:
        """Ask on stderr (stdout stays data); the default is no."""
        import typer

        return typer.confirm(question, default=False, err=True)


_CLEAR = "\r\x1b[K"
_current: Output | None = None


def start(json: bool = False) -> Output:
    """A fresh object for this invocation (cli/main.py calls it before parsing)."""
    global _current
    _current = Output(json=json)
    return _current


def current() -> Output:
    """This invocation's object (one is made when the app runs without main(), as in tests)."""
    return _current if _current is not None else start()


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} tokens/s"
