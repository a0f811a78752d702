"""Hermetic tests: a temp AGENTIC_FLOW_HOME, no hub access, no colour, a fixed width.

`run_cli` runs the CLI in this process (`main(argv)`, pipes, the call's own environment and a
new process's module state); `run_cli_process` starts the installed console script, for tests
where a real process is the point (entry point, signals, terminals, startup imports)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "models"


def expected_cases() -> list[tuple[str, dict]]:
    """(model folder name, case) for every recorded prompt of every fp32 fixture."""
    recorded = json.loads((MODELS / "expected.json").read_text(encoding="utf-8"))
    return [(name, case) for name, model in recorded["models"].items() for case in model["cases"]]


@pytest.fixture(scope="session", autouse=True)
def machine_probes_once() -> Iterator[None]:
    """py-cpuinfo (~1.3 s: it starts a process) and the memory-bandwidth probe (~0.7 s) answer
    the same all session, so in this process each runs once and is then replayed; every fresh
    home still goes through the product's probing and caching code (hardware.json). Processes
    the tests start probe for real; test_speed_estimate calls the probe itself."""
    import copy

    import cpuinfo

    from agentic_onnx.core.machine import bandwidth

    real_cpu_info, real_probe = cpuinfo.get_cpu_info, bandwidth.measure_read_bandwidth
    cpu_info: list[dict] = []
    rates: dict[int, float | None] = {}

    def get_cpu_info() -> dict:
        if not cpu_info:
            cpu_info.append(real_cpu_info())
        return copy.deepcopy(cpu_info[0])

    def measure_read_bandwidth(threads: int, *args: object, **kwargs: object) -> float | None:
        if args or kwargs:  # a test's own probe settings: measure
            return real_probe(threads, *args, **kwargs)  # type: ignore[arg-type]
        if threads not in rates:
            rates[threads] = real_probe(threads)
        return rates[threads]

    patch = pytest.MonkeyPatch()
    patch.setattr(cpuinfo, "get_cpu_info", get_cpu_info)
    patch.setattr(bandwidth, "measure_read_bandwidth", measure_read_bandwidth)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("agentic-home")
    monkeypatch.setenv("AGENTIC_FLOW_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # a fixture builder may leave it
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    # The router's process-wide windows and deployment states start fresh with each home.
    from agentic_onnx.router import deployments, rate_limits

    monkeypatch.setattr(rate_limits, "LIMITER", rate_limits.RateLimiter())
    monkeypatch.setattr(deployments, "DEPLOYMENTS", deployments.DeploymentPool())
    return home


@pytest.fixture(scope="session")
def expected() -> dict:
    """Greedy tokens and text recorded from transformers by tests/fixtures/make_models.py."""
    return json.loads((MODELS / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def model_copy(tmp_path: Path):
    """A private copy of a fixture model folder, for tests that damage it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(MODELS / name, target)
        return target

    return copy


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`agentic-onnx ARGS` run in this process through `main(argv)`, as a fresh process would run
    it: stdin, stdout and stderr are pipes (not terminals), `env` applies to this call only, and
    the process-wide state a new process starts without is set aside for the call (see
    `_fresh_process_state`). Use `run_cli_process` where a real process is the point.
    AGENTIC_TEST_RUN_CLI=process runs every call through the installed console script instead."""
    if os.environ.get("AGENTIC_TEST_RUN_CLI") == "process":
        return run_cli_process(*args, stdin=stdin, env=env, timeout=timeout)
    return _run_in_process(list(args), stdin or "", env or {}, timeout)


def run_cli_process(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (stdin/stdout are pipes)."""
    return subprocess.run(
        [*console_script(), *args], input=stdin if stdin is not None else "", capture_output=True,
        text=True, timeout=timeout, env={**os.environ, **(env or {})}, encoding="utf-8",
    )


def console_script() -> list[str]:
    """The command that starts the installed console script."""
    script = Path(sys.executable).with_name("agentic-onnx")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentic_onnx"]


# -- running the CLI in process ------------------------------------------------------------------


class _Pipe(io.BytesIO):
    """The bytes behind a captured standard stream; closing it (as a command might close
    stdout) keeps what was written readable."""

    def close(self) -> None:
        pass


def _std_stream(data: bytes = b"", errors: str = "strict") -> io.TextIOWrapper:
    # As CPython makes sys.stdin/stdout/stderr on POSIX: UTF-8 here, no newline translation.
    return io.TextIOWrapper(_Pipe(data), encoding="utf-8", errors=errors, newline="\n",
                            write_through=True)


def _read_back(stream: io.TextIOWrapper) -> str:
    """What a parent reading the pipe with text=True gets (universal newlines)."""
    stream.flush()
    text = stream.buffer.getvalue().decode("utf-8", errors="replace")  # type: ignore[attr-defined]
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _CliTimeout(BaseException):
    """The call ran past its timeout (a BaseException, so the CLI's one catch lets it through)."""


# Module-level state that a new process starts without: (module, attribute, fresh value). Each
# is swapped for a fresh value during a call and put back afterwards, so a call neither sees
# what earlier calls or the test itself left there nor leaves anything behind. The catalog's
# and the price table's lru_caches stay: they only read package data.
def _fresh(module: str, name: str) -> Callable[[], object]:
    """A new instance of a router module's process-wide class (windows, deployment states)."""
    return lambda: getattr(importlib.import_module(f"agentic_onnx.router.{module}"), name)()


_PROCESS_STATE: list[tuple[str, str, Callable[[], object]]] = [
    ("agentic_onnx.cli.output", "_current", lambda: None),  # the invocation's output object
    ("agentic_onnx.router.config_lookup", "_shown_warnings", set),  # config warnings, once each
    ("agentic_onnx.router.secrets", "_SECRETS", set),  # secrets registered by a loaded config
    ("agentic_onnx.router.secrets", "_WINDOWS", set),
    ("agentic_onnx.core.generation.engine", "_LOADED", dict),  # loaded models (load_s, warnings)
    ("agentic_onnx.core.embeddings.engine", "_LOADED", dict),
    ("agentic_onnx.core.generation.vision", "_PRIVATE_DIRS", list),  # removed at exit
    ("agentic_onnx.router.execute", "_WARNED", set),  # budget alerts, once per process
    ("agentic_onnx.router.rate_limits", "LIMITER", _fresh("rate_limits", "RateLimiter")),
    ("agentic_onnx.router.deployments", "DEPLOYMENTS", _fresh("deployments", "DeploymentPool")),
]
_SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE", "SIGALRM")
            if hasattr(signal, name)]
# Python's own warning filters when no -W option or PYTHONWARNINGS is given (a console script's
# __main__ is not ours, so its DeprecationWarnings are hidden too).
_DEFAULT_WARNING_FILTERS = [("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                            ("ignore", ImportWarning), ("ignore", ResourceWarning)]


@contextlib.contextmanager
def _fresh_process_state() -> Iterator[None]:
    """Set aside the process-wide state a new process would not have, and put it back after."""
    saved: list[tuple[object, str, object]] = []
    for module_name, attribute, fresh in _PROCESS_STATE:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, fresh())
    _reset_cli_caches()
    _reload_hub_constants()
    handlers = {number: signal.getsignal(number) for number in _SIGNALS}
    hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    # A process prints a thread's uncaught exception (and an unraisable one) on its stderr;
    # pytest's hooks would turn them into warnings instead.
    threading.excepthook, sys.unraisablehook = threading.__excepthook__, sys.__unraisablehook__
    loggers = _logging_state()
    cwd = os.getcwd()
    try:
        yield
    finally:
        vision = sys.modules.get("agentic_onnx.core.generation.vision")
        if vision is not None:
            vision.remove_private_folders()  # what the process's atexit would do
        hub_http = sys.modules.get("huggingface_hub.utils._http")
        if hub_http is not None:
            hub_http.close_session()  # the hub client's connection pool (its atexit)
        for module_name, attribute, fresh in _PROCESS_STATE:
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, attribute):  # as a new import has it
                setattr(module, attribute, fresh())
        for module, attribute, value in saved:
            setattr(module, attribute, value)
        _reset_cli_caches()
        if threading.current_thread() is threading.main_thread():
            for number, handler in handlers.items():
                if handler is not None and signal.getsignal(number) is not handler:
                    signal.signal(number, handler)
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks  # Typer sets excepthook
        _restore_logging(loggers)
        os.chdir(cwd)


def _reset_cli_caches() -> None:
    """Rich consoles are created per process (they read the stream and COLUMNS when made)."""
    render = sys.modules.get("agentic_onnx.cli.render")
    for name in ("stdout_console", "stderr_console"):
        cached = getattr(render, name, None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()  # type: ignore[union-attr]
    options = sys.modules.get("agentic_onnx.cli.options")
    if options is not None:
        options.CliState.reset()


def _reload_hub_constants() -> None:
    """huggingface_hub reads HF_HUB_OFFLINE, HF_HOME, ... once, at import: read them again."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        importlib.reload(constants)


def _logging_state() -> dict[str, tuple[list[logging.Handler], int, bool, bool]]:
    loggers = {"": logging.getLogger()} | {
        name: logger for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)}
    return {name: (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
            for name, logger in loggers.items()}


def _restore_logging(saved: dict[str, tuple[list[logging.Handler], int, bool, bool]]) -> None:
    """Undo logging set up by the call (uvicorn's handlers hold the call's stderr)."""
    for name, logger in [("", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]:
        if not isinstance(logger, logging.Logger):
            continue
        handlers, level, propagate, disabled = saved.get(name, ([], logging.NOTSET, True, False))
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    before = dict(os.environ)
    os.environ.update(changes)
    try:
        yield
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _CliTimeout in the main thread after `seconds` (subprocess.run's timeout)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _CliTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_in_process(args: list[str], stdin: str, env: dict[str, str],
                    timeout: float) -> subprocess.CompletedProcess[str]:
    from agentic_onnx.cli.main import main

    streams = (_std_stream(stdin.encode("utf-8"), "surrogateescape"),
               _std_stream(errors="surrogateescape"), _std_stream(errors="backslashreplace"))
    saved_streams, saved_argv = (sys.stdin, sys.stdout, sys.stderr), sys.argv
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(env))
        stack.enter_context(_fresh_process_state())
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.resetwarnings()
        for action, category in _DEFAULT_WARNING_FILTERS:
            warnings.simplefilter(action, category)  # type: ignore[arg-type]
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.argv = [console_script()[-1], *args]
        try:
            with _time_limit(timeout):
                code = main(args)
        except _CliTimeout:
            raise subprocess.TimeoutExpired(["agentic-onnx", *args], timeout,
                                            _read_back(streams[1]), _read_back(streams[2])) from None
        finally:
            for warning in caught:  # a process prints them on its stderr
                streams[2].write(warnings.formatwarning(warning.message, warning.category,
                                                        warning.filename, warning.lineno))
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            sys.argv = saved_argv
    _reload_hub_constants()  # back to the test's own environment
    return subprocess.CompletedProcess(["agentic-onnx", *args], code, _read_back(streams[1]),
                                       _read_back(streams[2]))


def models_table_column(stdout: str, column: str) -> dict[str, str]:
    """{model id: cell} for one column of `onnx models`' table (cells sit under their header)."""
    lines = stdout.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["id"])
    start = header.index(f" {column}") + 1
    cells = {}
    for line in lines[lines.index(header) + 1:]:
        words = line.replace("*", " ").split()
        if words:
            cells[words[0]] = line[start:start + len(column)].strip()
    return cells
