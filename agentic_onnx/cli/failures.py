"""How a failed command ends: one line on stderr, one JSON object on stdout with `--json`, and
the documented exit code. `main()` sends every failure here, so no command handles its own."""

from __future__ import annotations

from collections.abc import Sequence

from agentic_onnx.cli.options import CliState
from agentic_onnx.core.errors import AgenticError, ExitCode, UsageError

# The first line of an unexpected error's text is kept, and at most this much of it.
_MAX_UNEXPECTED_CHARS = 300


class UnexpectedError(AgenticError):
    """Anything that is not one of our errors (a runtime error inside onnxruntime, a bug)."""

    exit_code = ExitCode.RUNTIME_ERROR


def asks_for_json(args: Sequence[str]) -> bool:
    """`--json` among the options (before a `--`). Read from argv rather than from the option's
    value, so that a usage error Typer finds before any option is processed still gets its
    JSON object."""
    options = args[: list(args).index("--")] if "--" in args else args
    return "--json" in options


def exit_status(code: object) -> int:
    """`sys.exit`'s meaning of a SystemExit code, as a number."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    from agentic_onnx.cli import output

    output.current().message(str(code))
    return 1


def interrupted() -> int:
    return int(ExitCode.INTERRUPTED)


def report(exception: BaseException) -> int:
    """Tell the user (and a script) what failed; return the exit code."""
    from agentic_onnx.cli import output

    out, error = output.current(), as_agentic_error(exception)
    if CliState.debug:
        out.traceback(exception)
    out.error(error.one_line())
    if CliState.json:  # from argv: a usage error Typer finds first still gets its object
        out.json_value(error.to_json())
    return int(error.exit_code)


def as_agentic_error(exception: BaseException) -> AgenticError:
    """Our error as it is; Typer's usage errors (seen with `--json`) as a UsageError; anything
    else as an UnexpectedError whose text is one redacted line."""
    if isinstance(exception, AgenticError):
        return exception
    if _is_typer_usage_error(exception):
        error = UsageError(exception.format_message(), "See the command's --help.")  # type: ignore[attr-defined]
        error.exit_code = exception.exit_code  # type: ignore[attr-defined]
        return error
    if type(exception).__name__ == "Abort":
        return UnexpectedError("Aborted.")
    return UnexpectedError(f"Unexpected error: {_first_line(exception)}",
                           "Run the command again with --debug to see the traceback.")


def _is_typer_usage_error(exception: BaseException) -> bool:
    """Typer's (Click's) usage errors, recognised without importing Click (STYLE: Typer's public
    API only): they carry an exit code and format their own message."""
    return hasattr(exception, "format_message") and isinstance(
        getattr(exception, "exit_code", None), int)


def _first_line(exception: BaseException) -> str:
    from agentic_onnx.router.secrets import redact

    text = str(exception).strip().splitlines()
    detail = redact(text[0])[:_MAX_UNEXPECTED_CHARS] if text else ""
    name = type(exception).__name__
    return f"{name}: {detail}" if detail else name
