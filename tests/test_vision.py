"""Images through the engine and `run`, checked against the transformers reference recorded by
tests/fixtures/make_vision_models.py (no torch needed: the fixture and its tokens are committed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentic_onnx.core.generation import vision
from agentic_onnx.core.generation.engine import clear_model_cache, load_model
from agentic_onnx.core.generation.events import TextDelta, Usage
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import GenerationOptions

from .conftest import FIXTURES, MODELS, run_cli

VL = MODELS / "tiny-qwen25vl"
IMAGES = FIXTURES / "images"
RECORDED = json.loads((MODELS / "expected_vision.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in RECORDED["cases"]}


def _user_text(case: dict) -> str:
    return case["messages"][0]["content"].replace(RECORDED["image_tag"], "")


@pytest.fixture(scope="module")
def vl_model():
    yield load_model(open_model_folder(VL), "cpu", 1)
    clear_model_cache()


def _generate(model, text: str, images, **options):
    events = list(model.stream([{"role": "user", "content": text}],
                               GenerationOptions(max_tokens=RECORDED["max_new_tokens"], **options),
                               images=images))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


@pytest.mark.parametrize("name", ["one_image", "two_images"])
def test_greedy_output_matches_transformers(vl_model, name):
    case = CASES[name]
    images = [vision.load_image(str(IMAGES / file)) for file in case["images"]]
    text, events = _generate(vl_model, _user_text(case), images)
    assert text == case["text"]
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.prompt_tokens == len(case["prompt_ids"])  # image tokens count in the prompt
    assert usage.completion_tokens == len(case["generated_ids"])


def test_the_image_changes_the_answer(vl_model):
    case = CASES["one_image"]
    other = [vision.load_image(str(IMAGES / "checker.png"))]
    assert _generate(vl_model, _user_text(case), other)[0] != case["text"]


def test_text_only_turn_through_a_vision_model(vl_model):
    text, events = _generate(vl_model, "hello", None)
    assert isinstance(events[-2], Usage) and events[-2].completion_tokens > 0
    assert text == _generate(vl_model, "hello", [])[0]


def test_tags_for_each_model_type():
    phi = vision.place_image_tags([{"role": "user", "content": "hi"}], 2, "phi")
    assert phi[0]["content"] == "<|image_1|>\n<|image_2|>\nhi"
    qwen = vision.place_image_tags([{"role": "user", "content": "hi"}], 1, "qwen")
    assert qwen[0]["content"] == vision.QWEN_TAG + "hi"
    typed = vision.place_image_tags([{"role": "user", "content": "<|image_1|> a <|image_2|>"}], 2, "phi")
    assert typed[0]["content"] == "<|image_1|> a <|image_2|>"
    marked = [{"role": "user", "content": vision.IMAGE_MARKER + "a"},
              {"role": "assistant", "content": "b"},
              {"role": "user", "content": "c" + vision.IMAGE_MARKER}]
    assert [m["content"] for m in vision.place_image_tags(marked, 2, "phi")] == [
        "<|image_1|>\na", "b", "c<|image_2|>\n"]


@pytest.mark.parametrize("text, count", [("<|image_1|> x", 2), ("x", 0)])
def test_tag_and_image_counts_must_match(text, count):
    if count == 0:
        assert vision.place_image_tags([{"role": "user", "content": text}], 0, "phi")[0]["content"] == text
        with pytest.raises(vision.ImageError, match="1 image tag"):
            vision.place_image_tags([{"role": "user", "content": "<|image_1|>"}], 0, "phi")
        return
    with pytest.raises(vision.ImageError, match="1 image tag.*2 image"):
        vision.place_image_tags([{"role": "user", "content": text}], count, "phi")


def test_missing_and_unreadable_images(tmp_path):
    with pytest.raises(vision.ImageError, match="does not exist"):
        vision.load_image(str(tmp_path / "nope.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(vision.ImageError, match="not a PNG, JPEG or BMP"):
        vision.load_image(str(tmp_path / "notes.txt"))
    with pytest.raises(vision.ImageError, match="is a folder"):  # unreadable, even for root
        vision.load_image(str(tmp_path))


def test_corrupt_image_body_is_a_clear_error(vl_model):
    broken = vision.image_from_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "broken.png")
    with pytest.raises(vision.ImageError, match="could not process"):
        _generate(vl_model, "x", [broken])


def test_image_too_large_for_the_context_is_refused_before_running(model_copy):
    folder = model_copy("tiny-qwen25vl")
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["context_length"] = 70  # the text alone fits (55 tokens), with an image it does not
    config_path.write_text(json.dumps(config))
    model = load_model(open_model_folder(folder), "cpu", 1)
    image = vision.load_image(str(IMAGES / "red-blue.png"))
    with pytest.raises(vision.ImageTooLargeError, match=r"83 tokens \(6 for the images\).*holds 70"):
        model.stream([{"role": "user", "content": "What is in this picture?"}], GenerationOptions(),
                     images=[image]).__next__()
    assert _generate(model, "hello", None)[0]  # the same model still answers text


def test_warning_when_an_image_costs_more_than_the_budget(vl_model):
    image = vision.load_image(str(IMAGES / "red-blue.png"))
    prepared = vision.prepare_vision_prompt(vl_model, [{"role": "user", "content": "x"}], [image],
                                            token_budget=5)
    assert prepared.image_tokens == [RECORDED["tokens_per_image"]]
    assert len(prepared.warnings) == 1 and "costs 6 tokens (budget 5)" in prepared.warnings[0]
    quiet = vision.prepare_vision_prompt(vl_model, [{"role": "user", "content": "x"}], [image])
    assert quiet.warnings == []


def test_pixel_cap_uses_a_private_copy_and_never_edits_the_store():
    store_config = (VL / "processor_config.json").read_bytes()
    folder = open_model_folder(VL)
    private = vision.capped_model_path(folder, 56 * 56)
    try:
        assert private != folder.path
        capped = json.loads((private / "processor_config.json").read_text())
        resize = next(t["operation"] for t in capped["processor"]["transforms"]
                      if t["operation"]["type"] == "Resize")
        assert resize["attrs"]["max_pixels"] == 56 * 56
        model = load_model(folder, "cpu", 1, max_image_pixels=56 * 56)
        image = vision.load_image(str(IMAGES / "red-blue.png"))
        prepared = vision.prepare_vision_prompt(model, [{"role": "user", "content": "x"}], [image])
        assert prepared.image_tokens[0] < RECORDED["tokens_per_image"]
    finally:
        clear_model_cache()
    assert (VL / "processor_config.json").read_bytes() == store_config
    assert vision.capped_model_path(folder, 10**9) == folder.path  # a cap above the model's: no copy


def test_text_only_model_given_images_is_a_usage_error():
    model = load_model(open_model_folder(MODELS / "tiny-qwen2-fp32"), "cpu", 1)
    image = vision.load_image(str(IMAGES / "red-blue.png"))
    with pytest.raises(vision.VisionNotSupportedError, match="text-only"):
        model.stream([{"role": "user", "content": "x"}], GenerationOptions(), images=[image]).__next__()


# ------------------------------------------------------------------ the CLI
def test_run_with_one_image_prints_the_reference_text():
    case = CASES["one_image"]
    result = run_cli("run", "--model", str(VL), "--task", _user_text(case), "--image",
                     str(IMAGES / case["images"][0]), "--max-tokens", str(RECORDED["max_new_tokens"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout == case["text"] + "\n"


def test_run_with_two_images_and_one_from_stdin():
    case = CASES["two_images"]
    script = Path(sys.executable).with_name("agentic-onnx")
    result = subprocess.run(
        [str(script), "run", "--model", str(VL), "--task", _user_text(case),
         "--image", "-", "--image", str(IMAGES / case["images"][1]),
         "--max-tokens", str(RECORDED["max_new_tokens"])],
        input=(IMAGES / case["images"][0]).read_bytes(), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == case["text"] + "\n"


@pytest.mark.parametrize("model, image, message", [
    (VL, "/nonexistent/cat.png", "does not exist"),
    (VL, str(FIXTURES / "README.md"), "is not a PNG, JPEG or BMP"),
    (MODELS / "tiny-qwen2-fp32", str(IMAGES / "checker.png"), "text-only"),
])
def test_run_image_errors_exit_2_with_one_line(model, image, message):
    result = run_cli("run", "--model", str(model), "--task", "x", "--image", image)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_image_and_task_both_from_stdin():
    result = run_cli("run", "--model", str(VL), "--image", "-", stdin="x")
    assert result.returncode == 2 and "not both" in result.stderr


def test_run_tag_count_mismatch_exits_2():
    result = run_cli("run", "--model", str(VL), "--task", RECORDED["image_tag"] * 2 + "x",
                     "--image", str(IMAGES / "checker.png"))
    assert result.returncode == 2 and "2 image tag(s) but 1 image(s)" in result.stderr


def test_cloud_providers_refuse_images_before_sending():
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.providers.anthropic import AnthropicProvider
    from agentic_onnx.core.generation.request import ChatRequest

    provider = AnthropicProvider("anthropic", "http://127.0.0.1:9", "k", "ANTHROPIC_API_KEY", 5.0)
    image = vision.load_image(str(IMAGES / "checker.png"))
    with pytest.raises(UsageError, match="cannot take images"):
        provider.prepare(ChatRequest.of([{"role": "user", "content": "x"}], model="m", images=(image,)))
