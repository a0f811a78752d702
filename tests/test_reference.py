"""Files derived from the CLI (completions, docs/cli.md) must match what the CLI generates now."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "generate_reference.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_fresh_and_name_the_console_script(shell):
    generator = load_generator()
    path = generator.ROOT / "completions" / generator.SHELLS[shell]
    fresh = generator.completion_script(shell)
    assert "agentic-onnx" in fresh and "_AGENTIC_ONNX_COMPLETE" in fresh
    assert path.read_text(encoding="utf-8") == fresh, (
        f"{path.name} is stale: run python scripts/generate_reference.py")


def test_cli_reference_is_fresh():
    generator = load_generator()
    path = generator.ROOT / "docs" / "cli.md"
    assert path.read_text(encoding="utf-8") == generator.cli_reference(), (
        "docs/cli.md is stale: run python scripts/generate_reference.py")
