"""`onnx import`: a tiny random Hugging Face checkpoint, the same weights as an fp32 GGUF and as a
hub repo (the loopback fake hub), converted by the real model builder into the store and checked
token for token against transformers; and every refusal before a build (architecture, quantized
GGUF, disk, memory, missing packages), Ctrl-C during a build, a hub file that fails verification.

The conversions need the `import` extra (torch, transformers, gguf) and skip without it; each takes
~10 s on 2 cores (the builder's imports dominate)."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentic_onnx.cli.main import main
from agentic_onnx.core.errors import ExitCode, ImportRefusedError
from agentic_onnx.core.importing.plan import budget_for, require_memory
from agentic_onnx.core.importing.source import module_available
from agentic_onnx.core.paths import store_dir

from .conftest import run_cli
from .fake_hub import FakeHub
from .import_support import build_checkpoint, genai_greedy, write_gguf, write_quantized_gguf
from .test_cli_startup import HEAVY, PROBE

CONVERTER = ("torch", "transformers", "onnx", "onnx_ir", "safetensors")
needs_converter = pytest.mark.skipif(
    not all(module_available(m) for m in CONVERTER),
    reason='needs the converter (pip install "agentic-onnx[import]", CPU torch): not installed')
needs_gguf = pytest.mark.skipif(not module_available("gguf"), reason="needs the gguf package")
NAME = "tiny-import"
REPO = "someone/tiny-phi3"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The tiny Phi-3 checkpoint and its transformers greedy oracle (built once, ~5 s)."""
    if not all(module_available(m) for m in CONVERTER):
        pytest.skip("needs torch and transformers")
    folder = tmp_path_factory.mktemp("hf-tiny-phi3")
    return folder, build_checkpoint(folder)


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    last = [line for line in captured.err.splitlines() if line.strip()]
    return code, captured.out, last[-1] if last else ""


def assert_matches_oracle(folder: Path, cases: list[dict]) -> None:
    for case in cases:
        prompt_ids, generated = genai_greedy(folder, case["messages"])
        assert prompt_ids == case["prompt_ids"], case["name"]
        assert generated == case["generated_ids"], case["name"]


def nothing_installed(name: str = NAME) -> bool:
    partial = store_dir() / ".partial" / name
    return not (store_dir() / name).exists() and not (partial / "build").exists()


def fake_checkpoint(folder: Path, architecture: str = "Phi3ForCausalLM") -> Path:
    """config.json and a one-tensor safetensors file: enough for the checks, not for a build."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    return folder


# -- conversions, checked against transformers ----------------------------------------------------


@needs_converter
def test_a_hugging_face_folder_imports_and_matches_transformers_token_for_token(checkpoint):
    folder, cases = checkpoint
    result = run_cli("onnx", "import", str(folder), "--name", NAME, "-p", "fp32", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["id"], data["precision"], data["execution_provider"]) == (NAME, "fp32", "cpu")
    assert data["source"]["architecture"] == "Phi3ForCausalLM" and data["peak_rss_bytes"] > 0
    assert "loading weights" in result.stderr and "builder.log" in result.stderr
    model = store_dir() / NAME
    assert_matches_oracle(model, cases)

    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["origin"] == "import" and manifest["precision"] == "fp32"
    source_files = {f["path"]: f for f in manifest["imported"]["files"]}
    assert source_files["model.safetensors"]["size"] == (folder / "model.safetensors").stat().st_size
    assert manifest["imported"]["builder"].startswith("onnxruntime-genai")
    assert not (store_dir() / ".partial" / NAME).exists()  # the partial folder went with the rename

    listed = json.loads(run_cli("onnx", "list", "--json").stdout)
    assert [(r["id"], r["origin"], r["revision"]) for r in listed] == [(NAME, "import", "local")]
    assert run_cli("onnx", "verify", NAME).returncode == 0
    ran = run_cli("run", "--model", NAME, "--task", "Hello! How are you today?", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["model"], ran.stderr
    again = run_cli("onnx", "import", str(folder), "--name", NAME, "-p", "fp32")
    assert again.returncode == ExitCode.USAGE_ERROR and "--force" in again.stderr
    assert run_cli("onnx", "remove", NAME, "--yes").returncode == 0
    assert not model.exists()


@needs_converter
@needs_gguf
def test_an_fp32_gguf_of_the_same_weights_gives_the_same_tokens(checkpoint, tmp_path):
    folder, cases = checkpoint
    gguf_file = write_gguf(folder, tmp_path / "tiny-phi3-f32.gguf")
    result = run_cli("onnx", "import", str(gguf_file), "--name", NAME, "-p", "fp32",
                     "--config", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"]["source_kind"] == "gguf"
    assert_matches_oracle(store_dir() / NAME, cases)  # == transformers == the safetensors import


@needs_converter
def test_a_hub_repo_is_fetched_verified_then_converted(checkpoint, monkeypatch, tmp_path):
    folder, cases = checkpoint
    hub = FakeHub()
    repo = hub.add_repo(REPO, {**FakeHub.folder_files(folder, ""), "README.md": b"# tiny\n",
                               "model.gguf": b"not fetched"})
    hub.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        hub.corrupt.add("model.safetensors")
        bad = run_cli("onnx", "import", REPO, "--name", NAME, "-p", "fp32")
        assert bad.returncode == ExitCode.VERIFICATION_FAILED, bad.stderr
        assert "model.safetensors failed verification" in bad.stderr and nothing_installed()

        hub.corrupt.clear()
        good = run_cli("onnx", "import", REPO, "--name", NAME, "-p", "fp32", "--json")
        assert good.returncode == 0, good.stderr
        source = json.loads(good.stdout)["source"]
        assert (source["repo"], source["revision"], source["commit"]) == (REPO, "main", repo.commit)
        assert not hub.file_gets("model.gguf") and not hub.file_gets("README.md")
    finally:
        hub.stop()
    assert_matches_oracle(store_dir() / NAME, cases)


@needs_converter
def test_ctrl_c_stops_the_builder_and_installs_nothing(checkpoint):
    import psutil

    folder, _ = checkpoint
    script = Path(sys.executable).with_name("agentic-onnx")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "agentic_onnx"]
    cli = subprocess.Popen([*command, "onnx", "import", str(folder), "--name", NAME, "-p", "fp32"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    builder = None
    deadline = time.monotonic() + 60
    while builder is None and time.monotonic() < deadline and cli.poll() is None:
        builder = next((p for p in psutil.Process(cli.pid).children(recursive=True)
                        if "onnxruntime_genai.models.builder" in " ".join(p.cmdline())), None)
        time.sleep(0.05)
    assert builder is not None, cli.communicate()
    time.sleep(1.0)  # the builder is importing torch: well inside the conversion
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == ExitCode.INTERRUPTED, err
    assert "nothing was installed" in err and "Traceback" not in err
    assert not psutil.pid_exists(builder.pid) or builder.status() == psutil.STATUS_ZOMBIE
    assert nothing_installed()
    assert (store_dir() / ".partial" / NAME / "builder.log").is_file()  # kept for a look
    assert run_cli("onnx", "list", "--json").stdout.strip() == "[]"


@needs_converter
def test_a_failed_build_points_to_its_log_and_installs_nothing(tmp_path):
    folder = fake_checkpoint(tmp_path / "broken")  # passes the checks; the builder cannot load it
    result = run_cli("onnx", "import", str(folder), "--name", NAME, "-p", "fp32")
    assert result.returncode == ExitCode.RUNTIME_ERROR and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    log = store_dir() / ".partial" / NAME / "builder.log"
    assert "The model builder failed" in line and str(log) in line
    assert log.read_text().startswith("$ ") and nothing_installed()


# -- refusals before anything is built ---------------------------------------------------------------


def test_an_unsupported_architecture_is_refused_with_the_builders_list(capsys, tmp_path):
    folder = fake_checkpoint(tmp_path / "mamba", "MambaForCausalLM")
    code, _, line = call(capsys, "onnx", "import", str(folder), "--name", NAME)
    assert code == ExitCode.USAGE_ERROR
    assert "MambaForCausalLM is not an architecture" in line and "Phi3ForCausalLM" in line
    assert nothing_installed()


def test_a_folder_without_config_json_is_not_a_checkpoint(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, line = call(capsys, "onnx", "import", str(tmp_path / "empty"), "--name", NAME)
    assert code == ExitCode.USAGE_ERROR and "no config.json" in line


@needs_gguf
def test_a_quantized_gguf_is_refused_with_what_to_do_instead(capsys, tmp_path):
    gguf_file = write_quantized_gguf(tmp_path / "model-Q8_0.gguf")
    code, _, line = call(capsys, "onnx", "import", str(gguf_file), "--name", NAME)
    assert code == ExitCode.USAGE_ERROR
    assert "quantized GGUF (Q8_0" in line and "safetensors" in line and "fp16" in line


def test_not_enough_disk_is_refused_before_the_build(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTIC_ONNX_MIN_FREE_BYTES", str(10**18))
    code, _, line = call(capsys, "onnx", "import", str(fake_checkpoint(tmp_path / "hf")), "--name", NAME)
    assert code == ExitCode.RUNTIME_ERROR and "Not enough disk space" in line
    assert nothing_installed()


def test_missing_converter_packages_give_the_exact_install_command(capsys, tmp_path, monkeypatch):
    from agentic_onnx.core.importing import source as import_source

    monkeypatch.setattr(import_source, "module_available", lambda name: name not in ("torch", "transformers"))
    code, _, line = call(capsys, "onnx", "import", str(fake_checkpoint(tmp_path / "hf")), "--name", NAME)
    assert code == ExitCode.RUNTIME_ERROR and "needs torch, transformers" in line
    assert 'pip install "agentic-onnx[import]"' in line
    assert "--index-url https://download.pytorch.org/whl/cpu" in line  # CPU torch, no CUDA libraries


def test_bad_option_combinations_are_usage_errors(capsys, tmp_path):
    folder = str(fake_checkpoint(tmp_path / "hf"))
    for argv, needle in (((folder, "--name", NAME, "-p", "fp16", "-e", "cpu"), "cannot make a fp16"),
                         ((folder, "--name", NAME, "-p", "fp32", "--block-size", "32"), "int4 and int8"),
                         ((folder, "--name", NAME, "--block-size", "48"), "--block-size must be"),
                         ((folder, "--name", "Bad/Name"), "Invalid model name"),
                         ((folder, "--name", NAME, "--revision", "v1"), "hub repo sources only"),
                         ((str(tmp_path / "nope" / "x"), "--name", NAME), "not a folder")):
        code, _, line = call(capsys, "onnx", "import", *argv)
        assert code in (ExitCode.USAGE_ERROR, ExitCode.MODEL_NOT_FOUND), (argv, line)
        assert needle in line, (argv, line)


def test_the_memory_estimate_matches_the_phi3_mini_measurement_and_refuses_early():
    measured = 22.6e9  # the builder's peak for the Phi-3-mini shape, int4 (docs/import.md)
    estimate = budget_for(3_821_079_552, "int4", available_memory_bytes=64 * 10**9)
    assert measured <= estimate.peak_memory_bytes <= measured * 1.1 and estimate.memory_fits
    small = budget_for(3_821_079_552, "int4", available_memory_bytes=16 * 10**9)
    with pytest.raises(ImportRefusedError, match="needs about 23.4 GB of memory"):
        require_memory(small, "int4")


def test_import_help_imports_no_heavy_library():
    heavy = json.dumps([*HEAVY, "transformers", "gguf", "onnx", "onnx_ir", "safetensors"])
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["onnx", "import", "--help"]), heavy],
                            capture_output=True, text=True, timeout=60)
    assert "--precision" in result.stdout
    assert json.loads(result.stderr.rsplit("HEAVY=", 1)[1]) == []
