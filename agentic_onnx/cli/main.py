"""The console script: `main(argv) -> int` runs the app and returns the exit code.

It imports only the standard library and our light modules until it knows what is asked, so that
a cached `--help` (cli/help_cache.py) never imports Typer. Every failure ends in one place,
cli/failures.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agentic_onnx.cli import help_cache


def main(argv: Sequence[str] | None = None) -> int:
    """Run agentic-onnx with `argv` (default: the process's arguments); return the exit code."""
    args, debug = take_debug(sys.argv[1:] if argv is None else list(argv))
    if help_cache.asks_for_help(args):
        return _help(args, debug)
    return _run(args, debug)


def take_debug(args: list[str]) -> tuple[list[str], bool]:
    """`args` without `--debug` (before a `--`), and whether it was there: `--debug` works in
    any position without each command declaring it."""
    end = args.index("--") if "--" in args else len(args)
    kept = [arg for arg in args[:end] if arg != "--debug"] + args[end:]
    return kept, len(kept) < len(args)


def _help(args: list[str], debug: bool) -> int:
    """Print the help: the recorded text when there is one, else Typer's (then record it)."""
    text = help_cache.lookup(args)
    if text is not None:
        from agentic_onnx.cli import output

        output.start().text(text)
        return 0
    from agentic_onnx.cli import fast_help

    fast_help.import_help_module()
    real_stdout, recorder = sys.stdout, help_cache.Recorder(sys.stdout)
    sys.stdout = recorder  # type: ignore[assignment]
    try:
        code = _run(args, debug)
    finally:
        sys.stdout = real_stdout
    printed = recorder.text()
    if code == 0 and printed is not None:
        help_cache.remember(args, printed)
    return code


def _run(args: list[str], debug: bool = False) -> int:
    """Our errors become one line on stderr (and, with `--json`, one error object on stdout);
    an unexpected exception becomes one line too (`--debug` shows its traceback)."""
    from agentic_onnx.cli import failures, output
    from agentic_onnx.cli.app import app
    from agentic_onnx.cli.options import CliState

    CliState.reset(json=failures.asks_for_json(args), debug=debug)
    output.start()  # a fresh output object (and consoles) for this invocation
    try:
        # With --json, Typer must not print usage errors its own way: they come back to us.
        result = app(args=args, prog_name="agentic-onnx", standalone_mode=not CliState.json)
    except SystemExit as done:
        return failures.exit_status(done.code)
    except KeyboardInterrupt:
        return failures.interrupted()
    except Exception as error:  # noqa: BLE001 - the one catch: every failure ends here
        return failures.report(error)
    return result if isinstance(result, int) else 0
