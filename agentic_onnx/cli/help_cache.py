"""`--help` from a cache: what Typer printed last time for the same command line, the same
code and the same terminal.

Building the help means importing Typer and Rich, building every command's parameters from
its signature and laying the text out: about 0.2 s on top of Python's start, every time. The
text only changes when the code, the command line or the terminal changes, so the first
`--help` of each kind is recorded and later ones print the record without importing Typer. The
key holds everything that shapes the output: the command line, the package's CLI source files
(paths, sizes, mtimes) and Typer's and Rich's install, the environment variables Rich and Typer
read, whether stdout is a terminal and its width. A missing, unreadable or unwritable cache only
costs the normal speed.

Only the standard library is imported here: this module runs before everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

HELP_FLAGS = ("-h", "--help")
# What Rich and Typer read from the environment when they lay out help.
_LAYOUT_ENV = ("COLORTERM", "COLUMNS", "FORCE_COLOR", "JUPYTER_COLUMNS", "NO_COLOR", "TERM",
               "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERMINAL_WIDTH", "PY_COLORS", "GITHUB_ACTIONS",
               "TYPER_USE_RICH", "AGENTIC_FLOW_HOME")
_MAX_ENTRIES = 32
_FILE_NAME = "help-cache.json"


def asks_for_help(args: Sequence[str]) -> bool:
    """True when the command line asks for help (and this is not a tab completion)."""
    if any(name.endswith("_COMPLETE") for name in os.environ if name.startswith("_AGENTIC")):
        return False
    options = args[: list(args).index("--")] if "--" in args else args
    return any(arg in HELP_FLAGS for arg in options)


def lookup(args: Sequence[str]) -> str | None:
    """The recorded help for this command line, or None."""
    return _read().get(_key(args))


def remember(args: Sequence[str], text: str) -> None:
    """Record `text` as the help for this command line (best effort)."""
    entries = _read()
    entries.pop(_key(args), None)
    entries[_key(args)] = text
    while len(entries) > _MAX_ENTRIES:
        entries.pop(next(iter(entries)))
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass


class Recorder:
    """Stands in for stdout while Typer prints the help: passes everything through (Rich sees
    the real terminal) and keeps a copy."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self.parts: list[str] = []
        self.complete = True  # False once anything may have bypassed `write`

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream does (Click probes with b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.parts.append(text)
        return self._stream.write(text)  # type: ignore[attr-defined, no-any-return]

    def text(self) -> str | None:
        """What was printed, or None when some of it may have gone around the recorder."""
        return "".join(self.parts) if self.complete and self.parts else None

    def __getattr__(self, name: str) -> object:
        if name in ("buffer", "fileno", "detach"):
            self.complete = False  # bytes could be written past us
        return getattr(self._stream, name)


def _path() -> Path:
    from agentic_onnx.core.paths import home_dir

    return home_dir() / "cache" / _FILE_NAME


def _read() -> dict[str, str]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items()
            if isinstance(key, str) and isinstance(value, str)}


def _key(args: Sequence[str]) -> str:
    facts = {"args": list(args), "code": _code_stamp(),
             "env": {name: os.environ.get(name) for name in _LAYOUT_ENV},
             "tty": _isatty(), "width": _terminal_size(), "python": sys.version}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _code_stamp() -> list[object]:
    """Path, size and mtime of every file that shapes the help text."""
    import importlib.util

    cli = Path(__file__).parent
    files = sorted(cli.glob("*.py")) + [cli.parent / "__init__.py"]
    for package in ("typer", "rich"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin))
    stamp: list[object] = []
    for file in files:
        try:
            info = file.stat()
        except OSError:
            continue
        stamp.append([str(file), info.st_size, info.st_mtime_ns])
    return stamp


def _isatty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_size() -> int | None:
    """The terminal's width (help is laid out by width only: a taller window reuses it)."""
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            continue
    return None
