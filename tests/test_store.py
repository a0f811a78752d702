"""The store on disk: ids and paths that cannot escape it, manifests, verify, remove, disk check."""

from __future__ import annotations

import json
import os

import pytest

from agentic_onnx.core.models import store
from agentic_onnx.core.errors import (
    ExitCode,
    InsufficientDiskError,
    ModelNotFoundError,
    StoreError,
    VerificationError,
)
from agentic_onnx.core.paths import store_dir

from .conftest import run_cli, run_cli_process
from .fake_hub import install_fixture


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "UPPER", "a\\b", "x" * 81])
def test_ids_that_could_leave_the_store_are_refused(bad):
    with pytest.raises(StoreError):
        store.model_dir(bad)


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a//b", "C:/x", "a\\..\\b"])
def test_hub_paths_that_could_escape_are_refused(tmp_path, bad):
    with pytest.raises(StoreError):
        store.safe_join(tmp_path, bad)
    assert store.safe_join(tmp_path, "sub/model.onnx") == tmp_path / "sub" / "model.onnx"


def test_nothing_outside_the_store_is_deleted(tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_text("keep")
    with pytest.raises(StoreError, match="outside the model store"):
        store.delete_in_store(outside)
    with pytest.raises(StoreError):
        store.delete_in_store(store_dir())  # the store root itself is not a model
    assert (outside / "file").read_text() == "keep"


def test_remove_deletes_a_link_in_the_store_but_not_what_it_points_to(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data").write_text("keep")
    store_dir().mkdir(parents=True, exist_ok=True)
    os.symlink(outside, store.model_dir("linked"))
    assert store.remove_model("linked")
    assert not store.model_dir("linked").exists()
    assert (outside / "data").read_text() == "keep"


def test_only_folders_with_a_manifest_are_installed():
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    (store_dir() / "half-copied").mkdir()
    (store.partial_dir("phi-4-mini-cpu") / "model").mkdir(parents=True)
    (store_dir() / "bad-manifest").mkdir()
    (store_dir() / "bad-manifest" / "manifest.json").write_text("{not json")
    assert [m.id for m, _ in store.installed_models()] == ["phi-3-mini-4k-cpu"]
    assert store.read_manifest("bad-manifest") is None


def test_verify_passes_then_names_the_damaged_file():
    folder = install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    assert len(store.verify_model("phi-3-mini-4k-cpu").files) == 6
    data = bytearray((folder / "model.onnx.data").read_bytes())
    data[100] ^= 0x01
    (folder / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="model.onnx.data has a different SHA-256") as raised:
        store.verify_model("phi-3-mini-4k-cpu")
    assert raised.value.exit_code == ExitCode.VERIFICATION_FAILED
    (folder / "tokenizer.json").unlink()
    with pytest.raises(VerificationError, match=r"and 1 more"):
        store.verify_model("phi-3-mini-4k-cpu")


def test_verify_of_a_model_that_is_not_installed():
    with pytest.raises(ModelNotFoundError):
        store.verify_model("phi-3-mini-4k-cpu")


def test_mark_used_records_the_time():
    install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    assert store.read_manifest("phi-3-mini-4k-cpu").last_used_at is None
    store.mark_used("phi-3-mini-4k-cpu")
    assert store.read_manifest("phi-3-mini-4k-cpu").last_used_at is not None


def test_free_space_reserve(monkeypatch, tmp_path):
    monkeypatch.setenv(store.MIN_FREE_ENV_VAR, str(10**18))
    with pytest.raises(InsufficientDiskError, match="Not enough disk space"):
        store.check_free_space(1, tmp_path)
    monkeypatch.setenv(store.MIN_FREE_ENV_VAR, "0")
    store.check_free_space(1, tmp_path)
    with pytest.raises(InsufficientDiskError):
        store.check_free_space(10**18, tmp_path)
    monkeypatch.setenv(store.MIN_FREE_ENV_VAR, "lots")
    with pytest.raises(StoreError, match="whole number"):
        store.min_free_bytes()


def test_format_bytes():
    assert [store.format_bytes(n) for n in (999, 12_345, 2_723_000_000, 9_352_000_000_000)] == [
        "999 B", "12.3 KB", "2.7 GB", "9.4 TB"]


# -- the commands, without a hub -----------------------------------------------------------------


def test_list_verify_remove_through_the_console_script():
    folder = install_fixture("phi-3-mini-4k-cpu", "tiny-phi3-int4")
    listed = json.loads(run_cli_process("onnx", "list", "--json").stdout)
    assert [(m["id"], m["path"], m["revision"]) for m in listed] == [
        ("phi-3-mini-4k-cpu", str(folder), "main")]
    assert listed[0]["size_bytes"] == sum(p.stat().st_size for p in folder.iterdir())

    result = run_cli("onnx", "verify", "phi-3-mini-4k-cpu")
    assert result.returncode == 0 and "6 files OK" in result.stdout

    (folder / "genai_config.json").write_text("{}")
    result = run_cli_process("onnx", "verify", "phi-3-mini-4k-cpu")
    assert result.returncode == ExitCode.VERIFICATION_FAILED
    assert "genai_config.json" in result.stderr and "Traceback" not in result.stderr

    result = run_cli_process("onnx", "remove", "phi-3-mini-4k-cpu")  # not a terminal: no question
    assert result.returncode == 0, result.stderr
    assert not folder.exists()
    assert json.loads(run_cli("onnx", "list", "--json").stdout) == []
    result = run_cli("onnx", "remove", "phi-3-mini-4k-cpu")
    assert result.returncode == ExitCode.MODEL_NOT_FOUND


def test_remove_refuses_ids_that_escape():
    result = run_cli("onnx", "remove", "../../etc", "--yes")
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "Invalid model name" in result.stderr


def test_help_and_list_do_not_import_heavy_modules():
    import subprocess
    import sys

    code = ("import sys\nfrom agentic_onnx.cli.main import main\n"
            "for argv in (['x', 'onnx', '--help'], ['x', 'onnx', 'list']):\n"
            "    sys.argv = argv\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('huggingface_hub', 'onnxruntime_genai', 'pynvml') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
