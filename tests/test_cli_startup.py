"""`--help` and tab completion stay fast: they never import the heavy libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("onnxruntime_genai", "onnxruntime", "huggingface_hub", "pynvml", "cpuinfo", "httpx", "httpx2",
         "anthropic", "openai", "torch", "numpy", "starlette", "uvicorn", "jsonschema", "tokenizers",
         "transformers", "gguf", "onnx", "peft", "prometheus_client")

PROBE = """
import json, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["agentic-onnx", *args]
from agentic_onnx.cli.main import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("HEAVY=" + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))
"""


def imported_heavy_modules(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    marker = result.stderr.rsplit("HEAVY=", 1)
    assert len(marker) == 2, result.stderr
    return json.loads(marker[1])


def test_the_probe_sees_heavy_imports_when_they_happen():
    """Guard against a probe that cannot fail: `onnx info` does import the runtime."""
    assert "onnxruntime_genai" in imported_heavy_modules(["onnx", "info", "--json"])


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["onnx", "--help"],
                                  ["onnx", "info", "--help"], ["--version"], ["chat", "--help"],
                                  ["serve", "--help"], ["router", "--help"], ["config", "--help"],
                                  ["onnx", "benchmark", "--help"], ["onnx", "list"],
                                  ["embed", "--help"], ["onnx", "import", "--help"],
                                  ["config", "trust", "--help"], ["usage", "--help"]])
def test_help_imports_no_heavy_library(args):
    assert imported_heavy_modules(args) == []


def test_tab_completion_imports_no_heavy_library():
    env = {"_AGENTIC_ONNX_COMPLETE": "complete_bash", "COMP_WORDS": "agentic-onnx on",
           "COMP_CWORD": "1"}
    assert imported_heavy_modules([], env) == []


def test_completion_offers_the_commands():
    env = {**os.environ, "_AGENTIC_ONNX_COMPLETE": "complete_bash", "COMP_WORDS": "agentic-onnx on",
           "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "agentic_onnx"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert "onnx" in result.stdout.split()


def test_version():
    from agentic_onnx import __version__

    result = subprocess.run([sys.executable, "-m", "agentic_onnx", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"agentic-onnx {__version__}"


MODULES_AFTER = """
import json, sys
sys.argv = ["agentic-onnx", *json.loads(sys.argv[1])]
from agentic_onnx.cli.main import main
code = main()
after_help = sorted(m.split('.')[0] for m in sys.modules)
from rich.markdown import Markdown
from rich.console import Console
console = Console(file=open("/dev/null", "w"))
console.print(Markdown("# title\\n\\n`code`"))  # the real class, usable after a light help
sys.stderr.write("MODULES=" + json.dumps({"code": code, "modules": after_help,
                                          "markdown": Markdown.__module__}))
"""


def help_run(args: list[str], env: dict[str, str] | None = None) -> tuple[str, dict]:
    """(stdout, facts) of `agentic-onnx ARGS` in a fresh process: its exit code and the top-level
    packages imported by the time `main` returned."""
    result = subprocess.run([sys.executable, "-c", MODULES_AFTER, json.dumps(args)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    marker = result.stderr.rsplit("MODULES=", 1)
    assert len(marker) == 2, result.stderr
    return result.stdout, json.loads(marker[1])


def test_help_leaves_out_markdown_and_pygments_and_later_markdown_is_real():
    out, facts = help_run(["run", "--help"])
    assert facts["code"] == 0 and "--max-tokens" in out
    assert "markdown_it" not in facts["modules"] and "pygments" not in facts["modules"]
    assert facts["markdown"] == "rich.markdown"


def test_second_help_comes_from_the_cache_without_typer():
    first, facts = help_run(["onnx", "--help"])
    assert "typer" in facts["modules"]
    second, facts = help_run(["onnx", "--help"])
    assert second == first and facts["code"] == 0
    assert "typer" not in facts["modules"]


def test_cached_help_is_only_reused_for_the_same_terminal_and_command():
    wide, _ = help_run(["--help"], {"COLUMNS": "120"})
    narrow, facts = help_run(["--help"], {"COLUMNS": "60"})
    assert "typer" in facts["modules"]  # a new width is rendered, not served from the cache
    assert max(map(len, narrow.splitlines())) <= 60 < max(map(len, wide.splitlines()))
    other, facts = help_run(["chat", "--help"], {"COLUMNS": "120"})
    assert "typer" in facts["modules"] and other != wide


def test_a_failing_help_is_not_cached():
    _, facts = help_run(["no-such-command", "--help"])
    assert facts["code"] == 2
    _, facts = help_run(["no-such-command", "--help"])
    assert facts["code"] == 2 and "typer" in facts["modules"]


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last of `words`."""
    parts = words.split(" ")
    full_env = {**os.environ, "_AGENTIC_ONNX_COMPLETE": "complete_bash", "COMP_WORDS": words,
                "COMP_CWORD": str(len(parts) - 1), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "agentic_onnx"], capture_output=True,
                            text=True, env=full_env, timeout=60)
    return result.stdout.split()


def test_model_completion_offers_catalog_ids_aliases_and_added_names(tmp_path):
    from agentic_onnx.core.models.catalog import load_catalog

    from .conftest import MODELS, run_cli

    catalog = load_catalog()
    chat = [entry for entry in catalog.models if entry.kind == "chat"]
    embedding = [entry for entry in catalog.models if entry.kind != "chat"]
    added = run_cli("onnx", "add", "my-tiny", "--path", str(MODELS / "tiny-phi3-fp32"))
    assert added.returncode == 0, added.stderr
    offered = complete("agentic-onnx run --model ")
    assert {entry.id for entry in chat} | {entry.family for entry in chat} | {"my-tiny"} \
        <= set(offered)
    assert not {entry.id for entry in embedding} & set(offered)  # not a chat model
    prefix = chat[0].id[:5]
    assert set(complete(f"agentic-onnx serve -m {prefix}")) == {
        name for name in offered if name.startswith(prefix)}
    assert "my-tiny" in complete("agentic-onnx --model my-")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_model_completion_works_in_zsh_and_fish(shell):
    env = {**os.environ, "_AGENTIC_ONNX_COMPLETE": f"complete_{shell}",
           "_TYPER_COMPLETE_ARGS": "agentic-onnx run --model phi-3-mini-4k-c",
           "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    result = subprocess.run([sys.executable, "-m", "agentic_onnx"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert "phi-3-mini-4k-cpu" in result.stdout and "phi-3-medium" not in result.stdout
