"""One output object (cli/output.py): every write to stdout or stderr goes through it, its mode
is set once per invocation, and `--debug` works anywhere on the command line."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import pytest

from agentic_onnx.cli import output
from agentic_onnx.cli.main import main, take_debug
from agentic_onnx.core.errors import ModelTestFailedError

CLI = Path(__file__).resolve().parent.parent / "agentic_onnx" / "cli"
# The output object, and its stream views (they print only to the console it hands them).
OUTPUT_MODULES = {"output.py", "render.py"}


def direct_writes(path: Path) -> list[str]:
    """`print(...)`, `sys.stdout/stderr.write(...)`, `typer.echo/secho(...)` and `X.print(...)`
    on a console (a name or attribute that says console, or `Console(...)` itself)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func, text = node.func, ast.unparse(node.func)
        if isinstance(func, ast.Name) and func.id == "print":
            found.append(f"{path.name}:{node.lineno} print")
        elif text in ("sys.stdout.write", "sys.stderr.write", "typer.echo", "typer.secho"):
            found.append(f"{path.name}:{node.lineno} {text}")
        elif isinstance(func, ast.Attribute) and func.attr in ("print", "log", "rule") and (
                "console" in ast.unparse(func.value).lower()
                or (isinstance(func.value, ast.Call) and ast.unparse(func.value.func).endswith("Console"))):
            found.append(f"{path.name}:{node.lineno} {text}")
    return found


def test_the_scan_finds_each_kind_of_direct_write(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import sys, typer\nfrom rich.console import Console\nprint('x')\n"
                      "sys.stdout.write('x')\nsys.stderr.write('x')\ntyper.echo('x')\n"
                      "Console().print('x')\nself._console.print('x')\n"
                      "out.line('x')\nsys.stdout.flush()\n", encoding="utf-8")
    assert [hit.split(" ", 1)[1] for hit in direct_writes(sample)] == [
        "print", "sys.stdout.write", "sys.stderr.write", "typer.echo", "Console().print",
        "self._console.print"]


def test_only_the_output_module_writes_to_stdout_or_stderr():
    hits = [hit for path in sorted(CLI.glob("*.py")) if path.name not in OUTPUT_MODULES
            for hit in direct_writes(path)]
    assert hits == []


def test_the_stream_views_are_made_only_by_the_output_object():
    users = {path.name for path in CLI.glob("*.py")
             if path.name not in OUTPUT_MODULES
             and {"LiveMarkdownStream", "PlainStream"} & {
                 node.id if isinstance(node, ast.Name) else node.attr
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, (ast.Name, ast.Attribute))}}
    assert users == set()


def test_no_command_declares_debug():
    """`--debug` is taken from argv by main(); only the root declares it (for its help)."""
    declaring = {path.name for path in CLI.glob("*.py") if "DebugOpt" in path.read_text(
        encoding="utf-8") and path.name not in ("options.py", "app.py")}
    assert declaring == set()


# -- the object ------------------------------------------------------------------------------


def shown(data, human=None, *, json_mode: bool, failure=None):  # noqa: ANN001, ANN201
    """(stdout, the error raised) of one `result` call on a fresh object."""
    out, raised = output.Output(json=json_mode), None
    buffer = io.StringIO()
    real, sys.stdout = sys.stdout, buffer
    try:
        out.result(data, human, failure=failure)
    except Exception as error:  # noqa: BLE001 - the failure is the result here
        raised = error
    finally:
        sys.stdout = real
    return buffer.getvalue(), raised


def test_a_result_is_one_json_object_or_what_a_person_reads():
    data = {"id": "m", "files": 3}
    assert shown(data, "m: 3 files OK", json_mode=True) == ('{\n  "id": "m",\n  "files": 3\n}\n', None)
    assert shown(data, "m: 3 files OK", json_mode=False) == ("m: 3 files OK\n", None)
    drawn = shown(data, lambda out, d: out.line(f"{d['id']} has {d['files']}"), json_mode=False)
    assert drawn == ("m has 3\n", None)


def test_a_failing_result_travels_inside_the_error_with_json():
    failure = ModelTestFailedError("no text")
    out, raised = shown({"ok": False}, "status: FAILED", json_mode=True, failure=failure)
    assert out == "" and raised is failure and failure.details == {"ok": False}
    failure = ModelTestFailedError("no text")
    out, raised = shown({"ok": False}, "status: FAILED", json_mode=False, failure=failure)
    assert out == "status: FAILED\n" and raised is failure and failure.details == {}


def test_costly_data_is_built_only_for_json():
    built = []

    def data() -> dict:
        built.append(1)
        return {"n": 1}

    assert shown(data, "plain", json_mode=False) == ("plain\n", None) and built == []
    assert json.loads(shown(data, "plain", json_mode=True)[0]) == {"n": 1} and built == [1]


def test_messages_go_to_stderr_and_data_to_stdout(capsys):
    out = output.Output()
    out.warning("careful")
    out.note("did it")
    out.hint("run this next")
    out.error("broke")
    out.line("data")
    captured = capsys.readouterr()
    assert captured.out == "data\n"
    assert captured.err == "Warning: careful\ndid it\nrun this next\nError: broke\n"


def test_progress_is_quiet_with_json(capsys):
    output.Output(json=True).progress("request 1/5")
    output.Output().progress("request 2/5")
    assert capsys.readouterr().err == "request 2/5\n"


def test_modes_and_stream_views(capsys):
    from agentic_onnx.cli.render import PlainStream

    assert output.Output(json=True).mode == "json"
    assert output.Output().mode == "plain"  # pytest's stdout is not a terminal
    view = output.Output().stream()
    assert isinstance(view, PlainStream)
    with view:
        view.add("an answer")
    output.Output().answer("{}\n")
    assert capsys.readouterr().out == "an answer\n{}\n"  # the line is ended, never doubled


def test_each_invocation_writes_to_the_streams_it_was_started_with(capsys, monkeypatch):
    """Consoles are made per invocation, not at import: two in-process runs with different
    redirected streams each capture their own output."""
    for _ in range(2):
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        assert main(["onnx", "list"]) == 0
        assert main(["onnx", "verify", "nope"]) == 3
        assert "No models installed" in err.getvalue() and "Error: " in err.getvalue()
        assert out.getvalue() == ""


# -- --debug ---------------------------------------------------------------------------------


def test_debug_is_taken_from_any_position_but_not_after_a_double_dash():
    assert take_debug(["onnx", "list", "--debug"]) == (["onnx", "list"], True)
    assert take_debug(["--debug", "onnx", "list"]) == (["onnx", "list"], True)
    assert take_debug(["run", "-t", "hi"]) == (["run", "-t", "hi"], False)
    assert take_debug(["embed", "--", "--debug"]) == (["embed", "--", "--debug"], False)


@pytest.mark.parametrize("argv", [["--debug", "onnx", "list"], ["onnx", "--debug", "list"],
                                  ["onnx", "list", "--debug"]])
def test_debug_anywhere_shows_the_traceback(capsys, monkeypatch, argv):
    def broken() -> list:
        raise RuntimeError("the store exploded")

    monkeypatch.setattr("agentic_onnx.core.models.listing.installed_rows", broken)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: the store exploded" in err
    assert err.rstrip().splitlines()[-1].startswith("Error: Unexpected error: RuntimeError")
