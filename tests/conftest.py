"""Hermetic tests: a temp AGENTIC_FLOW_HOME, no hub access, no colour, a fixed width."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "models"


def expected_cases() -> list[tuple[str, dict]]:
    """(model folder name, case) for every recorded prompt of every fp32 fixture."""
    recorded = json.loads((MODELS / "expected.json").read_text(encoding="utf-8"))
    return [(name, case) for name, model in recorded["models"].items() for case in model["cases"]]


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("agentic-home")
    monkeypatch.setenv("AGENTIC_FLOW_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # a fixture builder may leave it
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
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
    """The installed console script, as a user runs it (stdin/stdout are pipes)."""
    script = Path(sys.executable).with_name("agentic-onnx")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "agentic_onnx"]
    return subprocess.run(
        [*command, *args], input=stdin if stdin is not None else "", capture_output=True,
        text=True, timeout=timeout, env={**os.environ, **(env or {})}, encoding="utf-8",
    )


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
