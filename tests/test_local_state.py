"""Local state that goes wrong: one name rule for every command, a home that cannot be written,
and the leftovers of a killed `remove` or download swept away (but never a live process's)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys

import pytest

from agentic_onnx.core.models import store
from agentic_onnx.core.errors import ExitCode, LocalFileError
from agentic_onnx.core.local_files import local_files
from agentic_onnx.core.models.names import check_model_name, is_model_name
from agentic_onnx.core.paths import store_dir

from .conftest import MODELS, run_cli
from .fake_hub import install_fixture

MODEL_ID = "phi-3-mini-4k-cpu"
OTHER_ID = "phi-4-mini-cpu"


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with `code` and said so in exactly one line, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- one name rule -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my-model", "a", "phi-3.5_mini", "x" * 80])
def test_good_names(name):
    assert is_model_name(name) and check_model_name(name) == name


@pytest.mark.parametrize("name", ["bad..name", "name\n", "\nname", "na me", "../x", "a/b", "a\\b",
                                  ".hidden", "-dash", "UPPER", "", "x" * 81, "caf\u00e9"])
def test_bad_names(name):
    assert not is_model_name(name)


BAD_NAMES = ["bad..name", "my-model\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", [
    ("onnx", "add", "{name}", "--repo", "org/repo"),
    ("onnx", "download", "{name}"),
    ("onnx", "remove", "{name}", "--yes"),
    ("run", "--model", "{name}", "--task", "hi"),
    ("serve", "--model", "{name}", "--port", "0"),
], ids=["add", "download", "remove", "run", "serve"])
def test_every_command_refuses_a_bad_name_in_one_line(command, name):
    result = run_cli(*(part.format(name=name) for part in command), timeout=60)
    one_error_line(result, ExitCode.USAGE_ERROR, "Invalid model name", "no '..'")


def test_a_name_that_add_accepts_can_be_removed():
    added = run_cli("onnx", "add", "my.model_1", "--repo", "org/repo")
    assert added.returncode == 0, added.stderr
    removed = run_cli("onnx", "remove", "my.model_1")
    assert removed.returncode == 0, removed.stderr
    assert "Unregistered my.model_1" in removed.stderr


def test_a_folder_named_like_a_folder_still_runs_from_the_current_directory(tmp_path):
    shutil.copytree(MODELS / "tiny-phi3-fp32", tmp_path / "My_Model")
    result = subprocess.run([sys.executable, "-m", "agentic_onnx", "run", "--model", "My_Model",
                             "--task", "hi", "--max-tokens", "2"], cwd=tmp_path, input="",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- a home that cannot be written ---------------------------------------------------------------
# As root, write bits are ignored, so a read-only folder would not fail: a file where the home
# folder should be fails the same way for every user (ENOTDIR/EEXIST), and the OSError -> one
# line mapping is the same code path as EROFS/EACCES/ENOSPC (checked directly below).


@pytest.fixture
def home_is_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AGENTIC_FLOW_HOME", str(blocker))
    return blocker


def test_add_and_download_into_an_unwritable_home_are_one_line(home_is_a_file):
    result = run_cli("onnx", "add", "my-model", "--repo", "org/repo")
    one_error_line(result, ExitCode.RUNTIME_ERROR, "Could not write the custom model registry",
                   str(home_is_a_file), "AGENTIC_FLOW_HOME")
    result = run_cli("onnx", "download", MODEL_ID)
    one_error_line(result, ExitCode.RUNTIME_ERROR, f"Could not write {MODEL_ID}",
                   str(home_is_a_file), "AGENTIC_FLOW_HOME")


def test_remove_in_an_unwritable_store_is_one_line_and_keeps_the_model():
    folder = install_fixture(MODEL_ID, "tiny-phi3-int4")
    blocker = store_dir() / store.PARTIAL_DIR  # where the trash folder must go
    blocker.write_text("not a folder")
    result = run_cli("onnx", "remove", MODEL_ID, "--yes")
    one_error_line(result, ExitCode.RUNTIME_ERROR, f"Could not remove {MODEL_ID}", str(blocker))
    assert store.is_installed(MODEL_ID) and folder.is_dir()


@pytest.mark.parametrize(("code", "hint"), [(errno.ENOSPC, "Free some space"),
                                            (errno.EROFS, "writable"), (errno.EACCES, "writable")])
def test_disk_full_and_read_only_errors_name_the_path_and_the_fix(code, hint):
    with pytest.raises(LocalFileError) as raised, local_files("write the model store"):
        raise OSError(code, "the OS's reason", "/some/where/model.onnx")
    line = raised.value.one_line()
    assert "/some/where/model.onnx" in line and hint in line and "\n" not in line
    assert raised.value.exit_code == ExitCode.RUNTIME_ERROR
    with pytest.raises(ConnectionResetError), local_files("write the model store"):
        raise ConnectionResetError(errno.ECONNRESET, "reset")  # not a file: left alone


# -- leftovers of a killed remove or download ----------------------------------------------------


def crash_leftovers(model_id: str) -> list:
    """What `kill -9` leaves: a model folder renamed to trash but not yet deleted, and a
    manifest temp file that was never renamed over manifest.json."""
    trash = store_dir() / store.PARTIAL_DIR / f"{store.TRASH_PREFIX}0123456789ab-{model_id}"
    shutil.copytree(MODELS / "tiny-phi3-int4", trash)
    temp = store_dir() / model_id / ".manifest.json.k2j4h5x_.tmp"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_text("{")
    return [trash, temp]


@pytest.fixture
def lock_holder():
    """Another live process holding a model's lock (a download or remove in progress); it
    says so on stdout once it holds it (the barrier) and lets go when its stdin closes."""
    holders: list[subprocess.Popen[str]] = []

    def hold(model_id: str) -> subprocess.Popen[str]:
        code = ("import sys\nfrom filelock import FileLock\nlock = FileLock(sys.argv[1])\n"
                "lock.acquire()\nprint('held', flush=True)\nsys.stdin.read()\nlock.release()\n")
        path = store.lock_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([sys.executable, "-c", code, str(path)], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        holders.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in holders:
        process.kill()
        process.wait(timeout=10)


def test_list_sweeps_the_leftovers_of_a_killed_process(lock_holder):
    install_fixture(MODEL_ID, "tiny-phi3-int4")
    dead = crash_leftovers(MODEL_ID)
    legacy = store_dir() / store.PARTIAL_DIR / f"{store.TRASH_PREFIX}fedcba987654"  # no owner
    legacy.mkdir()
    live = crash_leftovers(OTHER_ID)  # its lock is held: someone is deleting it right now
    holder = lock_holder(OTHER_ID)

    result = run_cli("onnx", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in [*dead, legacy])
    assert all(path.exists() for path in live)
    assert store.is_installed(MODEL_ID)  # the model itself is untouched

    holder.stdin.close()  # the other process finishes (or dies): its lock is free
    holder.wait(timeout=10)
    assert run_cli("onnx", "list").returncode == 0
    assert not any(path.exists() for path in live)


@pytest.mark.parametrize("command", [("onnx", "remove", MODEL_ID, "--yes"),
                                     ("onnx", "download", OTHER_ID)], ids=["remove", "download"])
def test_remove_and_download_sweep_too(command):
    install_fixture(MODEL_ID, "tiny-phi3-int4")
    leftovers = crash_leftovers(OTHER_ID)
    run_cli(*command)  # the download fails (HF_HUB_OFFLINE): the sweep came first
    assert not any(path.exists() for path in leftovers)


def test_a_removed_models_trash_names_its_owner(monkeypatch):
    install_fixture(MODEL_ID, "tiny-phi3-int4")
    seen = []
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, *args, **kwargs: (
        seen.append(path.name), real_rmtree(path, *args, **kwargs)))
    store.remove_model(MODEL_ID)
    assert len(seen) == 1 and seen[0].startswith(store.TRASH_PREFIX)
    assert seen[0].endswith(f"-{MODEL_ID}") and store.trash_owner(seen[0]) == MODEL_ID


# -- models added with `onnx add --path` are first-class ----------------------------------------


def test_a_linked_model_is_listed_with_its_size_and_verified(tmp_path):
    folder = tmp_path / "linked"
    shutil.copytree(MODELS / "tiny-phi3-fp32", folder)
    assert run_cli("onnx", "add", "my-linked", "--path", str(folder)).returncode == 0
    [row] = json.loads(run_cli("onnx", "list", "--json").stdout)
    expected_size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert (row["id"], row["linked"], row["size_bytes"]) == ("my-linked", True, expected_size)
    table = run_cli("onnx", "list").stdout
    assert "my-linked" in table and "linked" in run_cli("onnx", "list", env={"COLUMNS": "200"}).stdout
    checked = run_cli("onnx", "verify", "my-linked", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["files"] == len([f for f in folder.rglob("*") if f.is_file()])

    (folder / "model.onnx.data").write_bytes(b"\x00" * 64)  # damaged weights: it cannot load
    damaged = run_cli("onnx", "verify", "my-linked")
    assert damaged.returncode == ExitCode.VERIFICATION_FAILED and "does not load" in damaged.stderr

    shutil.rmtree(folder)
    gone = run_cli("onnx", "verify", "my-linked")
    assert gone.returncode == ExitCode.VERIFICATION_FAILED and "no longer exists" in gone.stderr
    listed = run_cli("onnx", "list")
    assert listed.returncode == 0 and "no longer exists" in listed.stderr
