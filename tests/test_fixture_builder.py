"""tests/fixtures/make_models.py replaces only what it builds: the vision fixture (built by
make_vision_models.py) and any other file in models/ survive a rebuild of the text models."""

from __future__ import annotations

from .import_support import make_models_module


def _builder():
    return make_models_module()  # imports only the stdlib at load time; its env settings undone


def test_install_replaces_only_the_built_entries(tmp_path):
    stage, target = tmp_path / "stage", tmp_path / "fixtures" / "models"
    (stage / "tiny-a").mkdir(parents=True)
    (stage / "tiny-a" / "model.onnx").write_text("new a")
    (stage / "expected.json").write_text("new expected")
    (target / "tiny-a").mkdir(parents=True)
    (target / "tiny-a" / "stale.onnx").write_text("old a, gone after the rebuild")
    (target / "expected.json").write_text("old expected")
    (target / "tiny-qwen25vl").mkdir()
    (target / "tiny-qwen25vl" / "vision.onnx").write_text("kept")
    (target / "expected_vision.json").write_text("kept too")

    assert _builder().install(stage, target) == ["expected.json", "tiny-a"]

    assert sorted(p.name for p in target.iterdir()) == [
        "expected.json", "expected_vision.json", "tiny-a", "tiny-qwen25vl"]
    assert [p.name for p in (target / "tiny-a").iterdir()] == ["model.onnx"]
    assert (target / "tiny-a" / "model.onnx").read_text() == "new a"
    assert (target / "expected.json").read_text() == "new expected"
    assert (target / "tiny-qwen25vl" / "vision.onnx").read_text() == "kept"
    assert (target / "expected_vision.json").read_text() == "kept too"
    assert sorted(p.name for p in target.parent.iterdir()) == ["models"]  # no scratch left


def test_install_into_a_missing_folder(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "expected.json").write_text("{}")
    target = tmp_path / "models"
    assert _builder().install(stage, target) == ["expected.json"]
    assert (target / "expected.json").read_text() == "{}"
