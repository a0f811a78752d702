"""The embedding engine against a transformers forward pass (tests/fixtures/models/
expected_embeddings.json, built by make_embedding_model.py): single texts, batches of mixed
lengths (padding must not change a vector), truncation at the model's limit, CLS pooling,
Matryoshka cuts, prefixes; the folder reader; the request batcher; the kind checks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from agentic_onnx.core.embeddings.batcher import EmbeddingBatcher
from agentic_onnx.core.embeddings.engine import load_embedding_model
from agentic_onnx.core.embeddings.folder import open_embedding_folder
from agentic_onnx.core.embeddings.resolve import embedding_kind, resolve_embedding
from agentic_onnx.core.errors import (
    InvalidModelError,
    NotInstalledError,
    UsageError,
    WrongModelKindError,
)

from .conftest import MODELS

FOLDER = MODELS / "tiny-bert-embed"
ORACLE = json.loads((MODELS / "expected_embeddings.json").read_text(encoding="utf-8"))
CASES = ORACLE["cases"]
TEXTS = [case["text"] for case in CASES]
TOLERANCE = 1e-5


def expected(key: str) -> np.ndarray:
    return np.array([case[key] for case in CASES], dtype=np.float64)


@pytest.fixture(scope="module")
def folder():
    return open_embedding_folder(FOLDER)


@pytest.fixture(scope="module")
def model(folder):
    return load_embedding_model(folder, "cpu", threads=1)


def test_the_folder_is_read_the_sentence_transformers_way(folder):
    assert (folder.onnx_file, folder.tokenizer_file) == ("onnx/model.onnx", "tokenizer.json")
    assert (folder.pooling, folder.normalize, folder.max_tokens) == ("mean", True, 16)
    assert folder.dimension == ORACLE["dimension"] == 32


@pytest.mark.parametrize("index", range(len(CASES)))
def test_a_single_text_equals_transformers(model, index):
    result = model.embed([TEXTS[index]])
    assert np.abs(result.vectors[0] - expected("mean")[index]).max() < TOLERANCE
    assert result.token_counts == [CASES[index]["token_count"]]
    assert result.truncated == ([0] if CASES[index]["truncated"] else [])


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_batches_of_mixed_lengths_give_each_text_its_lone_vector(model, batch_size):
    # the oracle ran every text alone, without padding
    result = model.embed(TEXTS, batch_size=batch_size)
    assert np.abs(result.vectors - expected("mean")).max() < TOLERANCE
    assert result.token_counts == [case["token_count"] for case in CASES]
    assert result.prompt_tokens == sum(case["token_count"] for case in CASES)


def test_truncation_is_reported_never_silent(model):
    result = model.embed(TEXTS)
    cut = [i for i, case in enumerate(CASES) if case["truncated"]]
    assert cut and result.truncated == cut
    assert all(CASES[i]["untruncated_token_count"] > 16 == result.token_counts[i] for i in cut)
    note = result.truncation_note()
    assert "16-token limit" in note and ", ".join(str(i + 1) for i in cut) in note
    assert model.embed(["hello"]).truncation_note() is None


def test_cls_pooling_and_no_normalisation_follow_the_folder(folder):
    cls = load_embedding_model(replace(folder, pooling="cls"), "cpu", threads=1)
    assert np.abs(cls.embed(TEXTS).vectors - expected("cls")).max() < TOLERANCE
    raw = load_embedding_model(replace(folder, normalize=False), "cpu", threads=1)
    assert np.abs(raw.embed(TEXTS).vectors - expected("mean_unnormalized")).max() < TOLERANCE


def test_matryoshka_cut_keeps_the_first_components_renormalised(folder):
    model = load_embedding_model(replace(folder, dimensions=(16, 8)), "cpu", threads=1)
    vectors = model.embed(TEXTS, dimensions=16).vectors
    cut = expected("mean_unnormalized")[:, :16]
    assert vectors.shape == (len(TEXTS), 16)
    assert np.abs(vectors - cut / np.linalg.norm(cut, axis=1, keepdims=True)).max() < TOLERANCE
    assert model.embed(["x"], dimensions=32).vectors.shape == (1, 32)  # the full size is fine
    with pytest.raises(UsageError) as caught:
        model.embed(["x"], dimensions=12)
    assert caught.value.one_line().endswith("cannot give 12 dimensions. Use one of: 32, 16, 8.")


def test_a_model_without_matryoshka_refuses_other_dimensions(model):
    with pytest.raises(UsageError, match="does not support other dimensions"):
        model.embed(["x"], dimensions=16)


def test_query_and_document_prefixes_go_before_the_text(folder):
    model = load_embedding_model(replace(folder, query_prefix="name three ",
                                         document_prefix="the quick "), "cpu", threads=1)
    plain = load_embedding_model(folder, "cpu", threads=1)
    as_query = model.embed(["colors"], input_type="query").vectors
    as_document = model.embed(["colors"]).vectors
    assert np.abs(as_query - plain.embed(["name three colors"]).vectors).max() < 1e-6
    assert np.abs(as_document - plain.embed(["the quick colors"]).vectors).max() < 1e-6


def test_the_batcher_runs_waiting_requests_as_one_batch(folder):
    batcher = EmbeddingBatcher(folder, "cpu", threads=1, max_queue=8)
    batcher.load(start=False)  # queue three requests before the worker runs
    futures = [batcher.submit(TEXTS[:3]), batcher.submit(TEXTS[3:4]), batcher.submit(TEXTS[4:])]
    batcher.start()
    results = [future.result(timeout=60) for future in futures]
    batcher.stop()
    assert batcher.batches_run == 1
    vectors = np.concatenate([r.vectors for r in results])
    assert np.abs(vectors - expected("mean")).max() < TOLERANCE
    truncated = [i for i, case in enumerate(CASES[4:]) if case["truncated"]]
    assert results[2].truncated == truncated


def test_a_full_batcher_queue_refuses_more(folder):
    from agentic_onnx.core.embeddings.batcher import EmbeddingQueueFullError

    batcher = EmbeddingBatcher(folder, "cpu", threads=1, max_queue=1)
    batcher.load(start=False)
    batcher.submit(["a"])
    with pytest.raises(EmbeddingQueueFullError):
        batcher.submit(["b"])


def test_a_genai_folder_or_a_chat_model_is_not_an_embedding_model():
    with pytest.raises(WrongModelKindError, match="is a chat model, not an embedding model"):
        resolve_embedding(str(MODELS / "tiny-phi3-fp32"))
    with pytest.raises(WrongModelKindError) as caught:
        resolve_embedding("phi-3-mini-4k-cpu")
    assert caught.value.exit_code == 2
    assert embedding_kind("phi-3-mini-4k-cpu") == "chat"
    assert embedding_kind("bge-small-en-v1.5") == embedding_kind("bge-small-en") == "embedding"
    assert embedding_kind(str(FOLDER)) == "embedding"


def test_an_embedding_model_is_not_a_chat_model():
    from agentic_onnx.core.models.resolve import resolve

    for name in ("all-minilm-l6-v2", "nomic-embed-text"):
        with pytest.raises(WrongModelKindError, match="is an embedding model, not a chat model"):
            resolve(name)


def test_a_catalog_embedding_model_must_be_installed():
    with pytest.raises(NotInstalledError) as caught:
        resolve_embedding("bge-small-en")
    assert caught.value.download_command == "agentic-onnx onnx download bge-small-en-v1.5"


def test_a_folder_without_a_graph_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(InvalidModelError, match="onnx/model.onnx"):
        open_embedding_folder(tmp_path)


def test_max_pooling_is_refused_by_name(tmp_path):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(FOLDER, target)
    (target / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(InvalidModelError, match="pooling_mode_max_tokens"):
        open_embedding_folder(target)


# -- the catalog's embedding entries ---------------------------------------------------------------


def _catalog_with(change) -> str:  # noqa: ANN001
    from importlib import resources

    data = json.loads(resources.files("agentic_onnx").joinpath("data/catalog.json").read_text())
    change(next(m for m in data["models"] if m["id"] == "bge-small-en-v1.5"), data)
    return json.dumps(data)


def test_embedding_entries_carry_their_facts():
    from agentic_onnx.core.models.catalog import load_catalog

    catalog = load_catalog()
    kinds = {entry.id: entry.kind for entry in catalog.models}
    assert {i for i, k in kinds.items() if k == "embedding"} == {
        "all-minilm-l6-v2", "bge-small-en-v1.5", "nomic-embed-text-v1.5"}
    bge = catalog.get("bge-small-en-v1.5")
    assert (bge.embedding.pooling, bge.embedding.dimension, bge.license) == ("cls", 384, "mit")
    assert bge.hub_model().files == bge.files and bge.hub_model().kind == "embedding"
    assert catalog.get("nomic-embed-text-v1.5").embedding.dimensions == (512, 256, 128, 64)
    assert catalog.get("phi-3-mini-4k-cpu").kind == "chat"


@pytest.mark.parametrize(("change", "needle"), [
    (lambda m, d: m.pop("embedding"), "needs `embedding` facts"),
    (lambda m, d: m.update(files=["tokenizer.json"]), "leaves out ['onnx/model.onnx']"),
    (lambda m, d: m["embedding"].update(pooling="max"), "pooling"),
    (lambda m, d: m.update(files=["../escape.onnx", *m["files"]]), "unsafe path"),
    (lambda m, d: d["recommendation"].update(small_cpu="bge-small-en-v1.5"), "not a chat model"),
])
def test_bad_embedding_entries_are_rejected(change, needle):
    from agentic_onnx.core.models.catalog import parse_catalog

    with pytest.raises(ValueError, match="invalid model catalog") as caught:
        parse_catalog(_catalog_with(change))
    assert needle in str(caught.value)


def test_an_installed_embedding_model_is_never_the_chat_recommendation():
    from agentic_onnx.core.models.catalog import load_catalog
    from agentic_onnx.core.models.recommend import MachineFacts, recommend

    facts = MachineFacts(8 * 2**30, (), ("cpu",))
    choice = recommend(load_catalog(), facts, {"bge-small-en-v1.5"})
    assert load_catalog().get(choice.model_id).kind == "chat"
