"""`onnx download` end to end: the installed console script, the real huggingface_hub client,
and a loopback fake hub serving the tiny Phi-3 fixture as phi-3-mini-4k-cpu."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import threading
import sys
import time
from pathlib import Path

from agentic_onnx.core.errors import ExitCode
from agentic_onnx.core.paths import store_dir

from .conftest import MODELS, run_cli
from .fake_hub import (  # noqa: F401 - `hub` is a fixture
    CPU_SUBFOLDER,
    DATA_FILE,
    PHI3_REPO,
    SIBLING_SUBFOLDER,
    TJS_REPO,
    FakeHub,
    hub,
)

MODEL_ID = "phi-3-mini-4k-cpu"
FIXTURE = MODELS / "tiny-phi3-int4"
DATA_SIZE = (FIXTURE / "model.onnx.data").stat().st_size
PARTIAL_DATA = Path("onnx-models/.partial") / MODEL_ID / "model" / "model.onnx.data.incomplete"


def installed() -> list[dict]:
    result = run_cli("onnx", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with `code`, ending with one `Error:` line that holds `needles`."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in last, last
    return last


def assert_installed_like_the_fixture() -> None:
    folder = store_dir() / MODEL_ID
    for source in FIXTURE.iterdir():
        assert (folder / source.name).read_bytes() == source.read_bytes(), source.name
    assert run_cli("onnx", "verify", MODEL_ID).returncode == 0


def range_requests(fake: FakeHub, path: str) -> list[str]:
    return [r.headers["range"] for r in fake.file_gets(path) if "range" in r.headers]


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("agentic-onnx")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentic_onnx"]


def wait_for(condition, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# -- the happy path --------------------------------------------------------------------------------


def test_download_list_run_offline_verify_remove(hub: FakeHub):
    result = run_cli("onnx", "download", MODEL_ID)
    assert result.returncode == 0, result.stderr
    folder = store_dir() / MODEL_ID
    assert result.stdout.strip() == str(folder)
    assert "Installed phi-3-mini-4k-cpu" in result.stderr
    assert_installed_like_the_fixture()
    asked = [r.path for r in hub.requests]
    assert not [p for p in asked if SIBLING_SUBFOLDER in p or p.endswith(("README.md", ".gitattributes"))]
    assert any(p.endswith(f"{CPU_SUBFOLDER}/genai_config.json") for p in asked)

    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["repo"], manifest["subfolder"], manifest["revision"]) == (
        PHI3_REPO, CPU_SUBFOLDER, "main")
    assert manifest["commit"] == hub.repos[PHI3_REPO].commit
    data_entry = next(f for f in manifest["files"] if f["path"] == "model.onnx.data")
    assert data_entry["sha256"] == hashlib.sha256((FIXTURE / "model.onnx.data").read_bytes()).hexdigest()

    [listed] = installed()
    assert (listed["id"], listed["path"], listed["revision"]) == (MODEL_ID, str(folder), "main")
    assert listed["size_bytes"] > DATA_SIZE and listed["last_used_at"] is None
    models = {m["id"]: m for m in json.loads(run_cli("onnx", "models", "--json").stdout)}
    assert models[MODEL_ID]["installed"] and not models["phi-3-mini-4k-gpu"]["installed"]
    assert {"id", "repo", "subfolder", "revision", "execution_provider", "precision",
            "size_bytes", "installed", "fits"} <= set(models[MODEL_ID])

    again = run_cli("onnx", "download", MODEL_ID)
    assert again.returncode == 0 and "already installed" in again.stderr

    hub.stop()  # from here on, nothing may touch the network
    by_id = run_cli("run", "--model", MODEL_ID, "--task", "hi", "--max-tokens", "5")
    by_path = run_cli("run", "--model", str(FIXTURE), "--task", "hi", "--max-tokens", "5")
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout == by_path.stdout
    by_alias = run_cli("run", "--model", "phi-3-mini-4k", "--task", "hi", "--max-tokens", "5")
    assert by_alias.returncode == 0, by_alias.stderr
    assert "phi-3-mini-4k -> phi-3-mini-4k-cpu (installed" in by_alias.stderr
    assert installed()[0]["last_used_at"] is not None

    removed = run_cli("onnx", "remove", MODEL_ID, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not folder.exists() and installed() == []


def test_run_without_the_model_names_the_download_command_or_fetches_it_with_yes(hub: FakeHub):
    result = run_cli("run", "--model", MODEL_ID, "--task", "hi", "--max-tokens", "3")
    error_line(result, ExitCode.MODEL_NOT_FOUND, "not installed",
               "agentic-onnx onnx download phi-3-mini-4k-cpu")
    assert not hub.file_gets(DATA_FILE)

    result = run_cli("run", "--model", MODEL_ID, "--task", "hi", "--max-tokens", "3", "--yes")
    assert result.returncode == 0, result.stderr
    assert "Installed phi-3-mini-4k-cpu" in result.stderr and result.stdout.strip()
    assert installed()[0]["id"] == MODEL_ID


# -- interruptions -------------------------------------------------------------------------------


def test_a_cut_connection_then_a_rerun_resumes_with_range(hub: FakeHub):
    hub.cut_after[DATA_FILE] = 70_000
    hub.down_after_cut = True  # the network stays down after the cut
    result = run_cli("onnx", "download", MODEL_ID)
    error_line(result, ExitCode.PROVIDER_ERROR, "503", "Run the same command again")
    assert installed() == []
    assert (store_dir().parent / PARTIAL_DATA).stat().st_size == 70_000

    hub.down, hub.down_after_cut = False, False
    result = run_cli("onnx", "download", MODEL_ID)
    assert result.returncode == 0, result.stderr
    assert "resuming with" in result.stderr
    assert range_requests(hub, DATA_FILE)[-1] == "bytes=70000-"
    assert_installed_like_the_fixture()


def test_a_cut_connection_is_resumed_within_the_same_run(hub: FakeHub):
    hub.cut_after[DATA_FILE] = 50_000
    result = run_cli("onnx", "download", MODEL_ID)
    assert result.returncode == 0, result.stderr
    assert "Resuming model.onnx.data" in result.stderr
    assert range_requests(hub, DATA_FILE) == ["bytes=50000-", "bytes=50000-"]  # resolve, then CDN
    assert_installed_like_the_fixture()


def test_ctrl_c_exits_130_and_a_rerun_resumes(hub: FakeHub):
    hub.throttle[DATA_FILE] = 0.05  # ~2 s for the data file
    process = subprocess.Popen([*console_script(), "onnx", "download", MODEL_ID],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: hub.bytes_sent.get(DATA_FILE, 0) >= 40_000)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr and "to resume" in stderr
    assert installed() == []
    have = (store_dir().parent / PARTIAL_DATA).stat().st_size
    assert 0 < have < DATA_SIZE

    hub.throttle.clear()
    result = run_cli("onnx", "download", MODEL_ID)
    assert result.returncode == 0, result.stderr
    assert range_requests(hub, DATA_FILE)[-1] == f"bytes={have}-"
    assert_installed_like_the_fixture()


def test_two_downloads_of_one_model_at_once(hub: FakeHub):
    """A barrier, not a time window: the hub holds the data file after its first chunk until
    the second download has said that it waits for the first."""
    release = hub.hold[DATA_FILE] = threading.Event()
    command = [*console_script(), "onnx", "download", MODEL_ID]
    first = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    second = None
    try:
        wait_for(lambda: hub.bytes_sent.get(DATA_FILE, 0) > 0)  # the first is mid-transfer
        second = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        said = []
        for line in second.stderr:  # type: ignore[union-attr]  # ends if the second exits
            said.append(line)
            if "waiting for it to finish" in line:
                break
        waiting = next((line for line in said if "waiting for it to finish" in line), None)
        release.set()
        _, second_rest = second.communicate(timeout=60)
        _, first_err = first.communicate(timeout=60)
    finally:
        release.set()
        first.kill()
        if second is not None:
            second.kill()
    assert first.returncode == 0, first_err
    assert second.returncode == 0, "".join(said) + second_rest
    assert waiting is not None and "already installed" in "".join(said) + second_rest
    assert hub.bytes_sent[DATA_FILE] == DATA_SIZE  # fetched once, by the first
    assert_installed_like_the_fixture()


# -- failures that must leave nothing installed ----------------------------------------------------


def test_a_corrupted_byte_is_a_hash_error_and_nothing_is_installed(hub: FakeHub):
    hub.corrupt.add(DATA_FILE)
    result = run_cli("onnx", "download", MODEL_ID)
    error_line(result, ExitCode.VERIFICATION_FAILED, "model.onnx.data", "SHA-256",
               "nothing was installed")
    assert installed() == [] and not (store_dir() / MODEL_ID).exists()
    assert not (store_dir().parent / PARTIAL_DATA).exists()  # the corrupt bytes are gone

    hub.corrupt.clear()
    assert run_cli("onnx", "download", MODEL_ID).returncode == 0
    assert_installed_like_the_fixture()


def test_unknown_repo_and_revision(hub: FakeHub):
    result = run_cli("onnx", "download", "phi-4-mini-cpu")  # a real catalog id the hub lacks
    error_line(result, ExitCode.MODEL_NOT_FOUND, "microsoft/Phi-4-mini-instruct-onnx", "not found")
    result = run_cli("onnx", "download", MODEL_ID, "--revision", "no-such-branch")
    error_line(result, ExitCode.MODEL_NOT_FOUND, "no-such-branch")
    result = run_cli("onnx", "download", "no-such-model")
    error_line(result, ExitCode.MODEL_NOT_FOUND, "Unknown model")
    assert installed() == []


def test_a_repo_without_genai_config_is_refused(hub: FakeHub):
    added = run_cli("onnx", "add", "tjs", "--repo", TJS_REPO, "--subfolder", "onnx")
    assert added.returncode == 0, added.stderr
    result = run_cli("onnx", "download", "tjs")
    error_line(result, ExitCode.MODEL_NOT_FOUND, "genai_config.json", "Nothing was downloaded")
    assert not [r for r in hub.requests if "/resolve/" in r.path]
    assert installed() == []


def test_a_full_disk_is_refused_before_any_byte(hub: FakeHub):
    result = run_cli("onnx", "download", MODEL_ID, env={"AGENTIC_ONNX_MIN_FREE_BYTES": str(10**18)})
    error_line(result, ExitCode.RUNTIME_ERROR, "Not enough disk space", "AGENTIC_ONNX_MIN_FREE_BYTES")
    assert not [r for r in hub.requests if "/resolve/" in r.path or r.path.startswith("/cdn/")]
    assert installed() == []


def test_offline_mode_is_a_clear_error():
    result = run_cli("onnx", "download", MODEL_ID)  # the autouse fixture sets HF_HUB_OFFLINE=1
    error_line(result, ExitCode.PROVIDER_ERROR, "HF_HUB_OFFLINE")


def test_on_a_terminal_run_offers_the_download(hub: FakeHub):
    import os
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen([*console_script(), "run", "--model", MODEL_ID, "--task", "hi",
                                "--max-tokens", "3"], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen, answered = b"", False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                seen += chunk
            if not answered and b"Download it now (" in seen and b"[y/N]" in seen:
                os.write(master, b"y\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        process.wait(timeout=10)
    finally:
        process.kill()
        os.close(master)
    assert answered, seen.decode(errors="replace")
    assert process.returncode == 0, seen.decode(errors="replace")
    assert re.search(rb"Download it now \(2\.7 GB; [\d.]+ [kMGT]?B free after; ~[\d.]+ tok/s here",
                     seen), seen.decode(errors="replace")  # size, disk after, speed (catalog figures)
    assert b"Installed phi-3-mini-4k-cpu" in seen
    assert installed()[0]["id"] == MODEL_ID


def test_a_custom_hub_model_downloads_runs_and_is_removed(hub: FakeHub):
    added = run_cli("onnx", "add", "my-phi", "--repo", PHI3_REPO, "--subfolder", CPU_SUBFOLDER + "/")
    assert added.returncode == 0, added.stderr
    result = run_cli("onnx", "download", "my-phi", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["id"], report["subfolder"], report["already_installed"]) == (
        "my-phi", CPU_SUBFOLDER, False)
    [listed] = installed()
    assert (listed["id"], listed["origin"], listed["execution_provider"]) == ("my-phi", "custom", "cpu")
    hub.stop()
    ran = run_cli("run", "--model", "my-phi", "--task", "hi", "--max-tokens", "3")
    assert ran.returncode == 0, ran.stderr
    assert run_cli("onnx", "remove", "my-phi").returncode == 0
    assert installed() == []
    assert run_cli("onnx", "download", "my-phi").returncode == ExitCode.MODEL_NOT_FOUND  # unregistered


# -- a failing HEAD is retried like the GET it precedes -------------------------------------------


def test_a_failing_head_is_retried(hub: FakeHub):
    hub.head_failures[DATA_FILE] = [500, 0]  # a 500, then a connection dropped without an answer
    result = run_cli("onnx", "download", MODEL_ID)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(hub.file_heads(DATA_FILE)) == 3
    assert len(hub.waits) == 2 and hub.waits[0] < hub.waits[1]  # a growing back-off before each retry
    assert_installed_like_the_fixture()


def test_a_head_that_keeps_failing_gives_up_after_bounded_retries(hub: FakeHub):
    hub.head_failures[DATA_FILE] = [502] * 10
    result = run_cli("onnx", "download", MODEL_ID)
    error_line(result, ExitCode.PROVIDER_ERROR, "502", "Run the same command again")
    assert len(hub.file_heads(DATA_FILE)) == 3  # MAX_FAILURES_WITHOUT_PROGRESS, then the error
    assert len(hub.waits) == 2  # a back-off between tries, none after the last
    assert installed() == []


def test_an_unreachable_hub_says_so_not_that_a_connection_was_lost():
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli("onnx", "download", MODEL_ID,
                     env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0"})
    line = error_line(result, ExitCode.PROVIDER_ERROR, "Cannot reach the model hub",
                      f"127.0.0.1:{port}", "Connection refused", "HF_ENDPOINT", "HF_HUB_OFFLINE")
    assert "Lost the connection" not in line and "resumes" not in line
    assert installed() == []


def test_a_download_remembers_its_speed_for_the_next_offer(hub: FakeHub):
    from agentic_onnx.core.models.download_rate import last_rate

    assert last_rate() is None
    assert run_cli("onnx", "download", MODEL_ID).returncode == 0
    fetched = sum(f.stat().st_size for f in FIXTURE.iterdir())
    assert last_rate() is not None and last_rate() > 0
    assert fetched >= 128 * 1024  # enough bytes to be measured at all
