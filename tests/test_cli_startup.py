"""`--help` and tab completion stay fast: they never import the heavy libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("onnxruntime_genai", "onnxruntime", "huggingface_hub", "pynvml", "cpuinfo", "httpx", "httpx2",
         "anthropic", "openai", "torch", "numpy", "starlette", "uvicorn", "jsonschema")

PROBE = """
import json, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["agentic-onnx", *args]
from agentic_onnx.cli.app import main
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
                                  ["onnx", "benchmark", "--help"], ["onnx", "list"]])
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
