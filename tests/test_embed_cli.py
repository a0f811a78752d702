"""`agentic-onnx embed` as a user runs it (pipes; in process, and once through the console
script), and the store operations on an embedding entry through the loopback fake hub."""

from __future__ import annotations

import json

import numpy as np

from agentic_onnx.core.errors import ExitCode
from agentic_onnx.core.paths import store_dir

from .conftest import MODELS, run_cli, run_cli_process
from .fake_hub import FakeHub, hub  # noqa: F401 - `hub` is a fixture

FOLDER = MODELS / "tiny-bert-embed"
ORACLE = json.loads((MODELS / "expected_embeddings.json").read_text(encoding="utf-8"))
CASES = ORACLE["cases"]
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"


def oracle(text: str) -> np.ndarray:
    return np.array(next(case["mean"] for case in CASES if case["text"] == text))


def last_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.strip()][-1]


def test_arguments_give_one_vector_per_line():
    texts = [CASES[0]["text"], CASES[1]["text"], CASES[2]["text"]]
    result = run_cli_process("embed", "--model", str(FOLDER), "--threads", "1", *texts)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line, text in zip(lines, texts):
        assert np.abs(np.array(json.loads(line)) - oracle(text)).max() < 1e-6
    assert "Truncated to the model's 16-token limit: input 2, 3;" in result.stderr


def test_stdin_lines_and_json_output():
    texts = [case["text"] for case in CASES if case["text"] and "\n" not in case["text"]]
    result = run_cli("embed", "-m", str(FOLDER), "--json", stdin="\n".join(texts) + "\n")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "tiny-bert-embed" and data["dimension"] == 32
    assert [row["index"] for row in data["data"]] == list(range(len(texts)))
    for row, text in zip(data["data"], texts):
        case = next(c for c in CASES if c["text"] == text)
        assert np.abs(np.array(row["embedding"]) - np.array(case["mean"])).max() < 1e-6
        assert (row["tokens"], row["truncated"]) == (case["token_count"], case["truncated"])
    assert data["usage"]["prompt_tokens"] == sum(row["tokens"] for row in data["data"])
    assert data["truncated"] == [row["index"] for row in data["data"] if row["truncated"]]


def test_no_text_is_a_usage_error():
    result = run_cli("embed", "-m", str(FOLDER), stdin="")
    assert result.returncode == ExitCode.USAGE_ERROR
    assert last_error(result.stderr).startswith("Error: No text given")


def test_a_chat_model_is_refused_with_the_command_that_takes_it():
    for model in ("phi-3-mini-4k-cpu", str(MODELS / "tiny-phi3-fp32")):
        result = run_cli("embed", "-m", model, "hello")
        assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
        assert "is a chat model, not an embedding model" in last_error(result.stderr)
    result = run_cli("run", "-m", "bge-small-en-v1.5", "-t", "hello")
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "`agentic-onnx embed`" in last_error(result.stderr)


def test_unsupported_dimensions_and_an_uninstalled_model():
    result = run_cli("embed", "-m", str(FOLDER), "--dimensions", "8", "hello")
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "does not support other dimensions" in last_error(result.stderr)
    result = run_cli("embed", "-m", "all-minilm-l6-v2", "hello")
    assert result.returncode == ExitCode.MODEL_NOT_FOUND
    assert "onnx download all-minilm-l6-v2" in last_error(result.stderr)


def test_onnx_models_shows_the_kind():
    rows = {row["id"]: row for row in json.loads(run_cli("onnx", "models", "--json").stdout)}
    assert rows["all-minilm-l6-v2"]["kind"] == "embedding"
    assert rows["all-minilm-l6-v2"]["embedding"]["dimension"] == 384
    assert rows["phi-3-mini-4k-cpu"]["kind"] == "chat" and rows["phi-3-mini-4k-cpu"]["embedding"] is None
    table = run_cli("onnx", "models").stdout
    section = table[table.index("Embedding models"):]
    assert "bge-small-en-v1.5" in section and "cls" in section
    assert "bge-small-en-v1.5" not in table[:table.index("Embedding models")]


# -- the store, through the fake hub ---------------------------------------------------------------


def repo_files() -> dict[str, bytes]:
    """The fixture in the repo layout, plus exports and weights the entry must not fetch."""
    files = {str(p.relative_to(FOLDER)): p.read_bytes() for p in FOLDER.rglob("*") if p.is_file()}
    files.update({"onnx/model_qint8_avx512.onnx": b"\x08" * 4096, "pytorch_model.bin": b"\x00" * 8192,
                  "openvino/openvino_model.xml": b"<xml/>", "README.md": b"# fake\n"})
    return files


def test_download_list_verify_remove_an_embedding_model(hub: FakeHub):
    hub.add_repo(MINILM_REPO, repo_files())
    result = run_cli("onnx", "download", "all-minilm-l6-v2")
    assert result.returncode == 0, result.stderr
    folder = store_dir() / "all-minilm-l6-v2"
    assert (folder / "onnx" / "model.onnx").read_bytes() == (FOLDER / "onnx" / "model.onnx").read_bytes()
    assert (folder / "1_Pooling" / "config.json").is_file()
    fetched = {r.path for r in hub.requests}
    assert not [p for p in fetched if p.endswith(("qint8_avx512.onnx", "pytorch_model.bin",
                                                   "openvino_model.xml", "README.md"))]
    [listed] = json.loads(run_cli("onnx", "list", "--json").stdout)
    assert (listed["id"], listed["kind"], listed["repo"]) == ("all-minilm-l6-v2", "embedding", MINILM_REPO)
    assert run_cli("onnx", "verify", "all-minilm-l6-v2").returncode == 0
    (folder / "tokenizer.json").write_bytes(b"{}")
    assert run_cli("onnx", "verify", "all-minilm-l6-v2").returncode == ExitCode.VERIFICATION_FAILED
    assert run_cli("onnx", "remove", "all-minilm-l6-v2", "--yes").returncode == 0
    assert not folder.exists()


def test_a_repo_without_the_encoder_graph_downloads_nothing(hub: FakeHub):
    files = repo_files()
    del files["onnx/model.onnx"]
    hub.add_repo(MINILM_REPO, files)
    result = run_cli("onnx", "download", "all-minilm-l6-v2")
    assert result.returncode == ExitCode.MODEL_NOT_FOUND, result.stderr
    assert "has no onnx/model.onnx" in last_error(result.stderr)
    assert not (store_dir() / "all-minilm-l6-v2").exists()
    assert not [r for r in hub.requests if "/resolve/" in r.path]


def test_embed_help_imports_no_heavy_library():
    from .test_cli_startup import imported_heavy_modules

    assert imported_heavy_modules(["embed", "--help"]) == []
    assert {"onnxruntime", "numpy"} <= set(imported_heavy_modules(
        ["embed", "-m", str(FOLDER), "--threads", "1", "hi"]))  # the probe can see them
