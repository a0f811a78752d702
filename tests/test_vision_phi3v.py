"""The `phi3v` wiring (prompt tags, negative image ids, several images, errors) through the engine
and `run`, on the hand-built tiny-phi3v fixture (tests/fixtures/make_phi3v_model.py), against a
numpy reference of the same network. Phi-3-vision's real tower is remote code on the hub, so the
numbers are not Phi-3-vision's: what is checked is genai's phi3v contract as our code drives it."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from agentic_onnx.core.generation import vision
from agentic_onnx.core.generation.engine import clear_model_cache, load_model
from agentic_onnx.core.generation.events import TextDelta, Usage
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import GenerationOptions

from .conftest import FIXTURES, MODELS, run_cli

sys.path.insert(0, str(FIXTURES))
import make_phi3v_model as ref  # noqa: E402  (numpy only: the reference network)

PHI3V = MODELS / "tiny-phi3v"
IMAGES = FIXTURES / "images"
RECORDED = json.loads((MODELS / "expected_phi3v.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in RECORDED["cases"]}
WEIGHTS = ref.weights()
EOS = {4, 0}


def _text(case: dict) -> str:
    return re.sub(r"<\|image_\d+\|>\n", "", case["messages"][0]["content"])


def _images(case: dict) -> list[vision.ImageInput]:
    return [vision.load_image(str(IMAGES / name)) for name in case["images"]]


@pytest.fixture(scope="module")
def phi3v():
    yield load_model(open_model_folder(PHI3V), "cpu", 1)
    clear_model_cache()


def _prepare(model, text: str, images, **kwargs) -> vision.VisionPrompt:
    return vision.prepare_vision_prompt(model, [{"role": "user", "content": text}], images, **kwargs)


def _arrays(prepared: vision.VisionPrompt) -> dict[str, np.ndarray]:
    return {name: prepared.inputs[name].as_numpy() for name in prepared.inputs.keys()}


def _generate(model, text: str, images, max_tokens: int = RECORDED["max_new_tokens"]):
    events = list(model.stream([{"role": "user", "content": text}],
                               GenerationOptions(max_tokens=max_tokens), images=images))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


# ------------------------------------------------------------------ prompt and image ids
@pytest.mark.parametrize("name", ["one_image", "two_images"])
def test_tags_become_runs_of_negative_image_ids_in_place(phi3v, name):
    case = CASES[name]
    prepared = _prepare(phi3v, _text(case), _images(case))
    rendered = phi3v.render_prompt(vision.place_image_tags(
        [{"role": "user", "content": _text(case)}], len(case["images"]), "phi"))
    assert rendered == case["prompt"]  # <|image_1|>\n<|image_2|>\n before the text, in the user turn
    ids = _arrays(prepared)["input_ids"].reshape(-1).tolist()
    # genai splits the prompt at each tag, encodes the pieces and puts num_img_tokens[N-1] x -N
    # where <|image_N|> stood.
    pieces = re.split(r"<\|image_\d+\|>", rendered)
    expected: list[int] = []
    for index, piece in enumerate(pieces):
        expected += list(phi3v.tokenizer.encode(piece))
        if index < len(case["images"]):
            expected += [-(index + 1)] * case["num_img_tokens"][index]
    assert ids == expected
    assert prepared.prompt_tokens == len(ids) == case["prompt_length"]
    assert prepared.image_tokens == case["num_img_tokens"] == [1921] * len(case["images"])


def test_typed_tags_keep_their_numbers(phi3v):
    images = _images(CASES["two_images_swapped"])
    prepared = _prepare(phi3v, "<|image_2|>\nfirst <|image_1|>\nsecond", images)
    ids = _arrays(prepared)["input_ids"].reshape(-1)
    negative = ids[ids < 0]
    assert negative[0] == -2 and negative[-1] == -1  # the order the user wrote
    assert list(np.flatnonzero(np.diff(negative))) == [1920]


def test_text_only_turn_through_phi3v(phi3v):
    prepared = _prepare(phi3v, "hello", [])
    arrays = _arrays(prepared)
    assert set(arrays) == {"input_ids"} and (arrays["input_ids"] >= 0).all()
    text, events = _generate(phi3v, "hello", None, max_tokens=4)
    assert events[-2].completion_tokens > 0 and text == _generate(phi3v, "hello", [], max_tokens=4)[0]


# ------------------------------------------------------------------ numbers vs numpy
@pytest.mark.parametrize("name", sorted(CASES))
def test_greedy_tokens_match_the_numpy_reference(phi3v, name):
    case = CASES[name]
    prepared = _prepare(phi3v, _text(case), _images(case))
    a = _arrays(prepared)
    tokens, first, margin = ref.reference_generate(WEIGHTS, a["input_ids"], a["pixel_values"], a["image_sizes"],
                                                   EOS, RECORDED["max_new_tokens"])
    assert tokens == case["generated_ids"] and margin > 0.1
    generator = vision.vision_generator(phi3v, prepared, prepared.prompt_tokens + RECORDED["max_new_tokens"],
                                        GenerationOptions())
    logits = np.asarray(generator.get_logits()).reshape(-1)
    assert np.abs(logits - first).max() < ref.LOGITS_TOLERANCE  # first-step logits, float32 vs float64
    text, events = _generate(phi3v, _text(case), _images(case))
    assert text == case["text"] == phi3v.tokenizer.decode(tokens)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.prompt_tokens == case["prompt_length"] and usage.completion_tokens == len(tokens)


def test_each_image_and_their_order_change_the_answer():
    texts = [CASES[name]["text"] for name in ("one_image", "one_image_other", "two_images", "two_images_swapped")]
    assert len(set(texts)) == 4


def test_phi3v_image_costs_warn_above_the_budget(phi3v):
    prepared = _prepare(phi3v, "x", _images(CASES["one_image"]))
    assert len(prepared.warnings) == 1 and "costs 1921 tokens (budget 1024)" in prepared.warnings[0]


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("text, count", [("<|image_1|>\n<|image_2|>\nx", 1), ("<|image_1|>\nx", 2)])
def test_tag_and_image_count_mismatch_is_refused_before_genai(phi3v, text, count):
    images = _images(CASES["two_images"])[:count]
    with pytest.raises(vision.ImageError, match=r"image tag\(s\) but \d image\(s\)"):
        _generate(phi3v, text, images)


def test_a_tag_number_beyond_the_images_is_a_clear_error(phi3v):
    with pytest.raises(vision.ImageError, match=r"<\|image_3\|> but 1 image"):  # before genai's own check
        _generate(phi3v, "<|image_3|>\nx", _images(CASES["one_image"]))


def test_image_too_large_for_the_context_is_refused_before_running(model_copy):
    folder = model_copy("tiny-phi3v")
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["context_length"] = 3000  # one image (1942 tokens) fits, two (3866) do not
    config["search"]["max_length"] = 3000
    config_path.write_text(json.dumps(config))
    model = load_model(open_model_folder(folder), "cpu", 1)
    try:
        with pytest.raises(vision.ImageTooLargeError, match=r"3866 tokens \(3842 for the images\).*holds 3000"):
            _generate(model, _text(CASES["two_images"]), _images(CASES["two_images"]))
        assert _generate(model, _text(CASES["one_image"]), _images(CASES["one_image"]))[0] == CASES["one_image"]["text"]
    finally:
        clear_model_cache()


# ------------------------------------------------------------------ the CLI
def test_run_with_two_images_prints_the_reference_text():
    case = CASES["two_images"]
    args = ["run", "--model", str(PHI3V), "--task", _text(case), "--max-tokens", str(RECORDED["max_new_tokens"])]
    for name in case["images"]:
        args += ["--image", str(IMAGES / name)]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == case["text"] + "\n"
    assert "costs 1921 tokens" in result.stderr  # the budget warning, once per image


def test_run_tag_count_mismatch_exits_2():
    result = run_cli("run", "--model", str(PHI3V), "--task", "<|image_1|> <|image_2|> x",
                     "--image", str(IMAGES / "checker.png"))
    assert result.returncode == 2 and "2 image tag(s) but 1 image(s)" in result.stderr
