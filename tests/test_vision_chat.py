"""Images in `chat`: `/image PATH` attaches to the next turn, and the answer is the engine's own
for the same history and images (core.generation.conversation runs vision turns through the engine)."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.core.generation import vision
from agentic_onnx.core.generation.conversation import Conversation
from agentic_onnx.core.generation.engine import clear_model_cache, load_model
from agentic_onnx.core.generation.events import TextDelta
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import GenerationOptions

from .conftest import FIXTURES, MODELS, run_cli

VL = MODELS / "tiny-qwen25vl"
IMAGES = FIXTURES / "images"
RECORDED = json.loads((MODELS / "expected_vision.json").read_text(encoding="utf-8"))
CASE = next(case for case in RECORDED["cases"] if case["name"] == "one_image")
QUESTION = CASE["messages"][0]["content"].replace(RECORDED["image_tag"], "")
OPTIONS = GenerationOptions(max_tokens=RECORDED["max_new_tokens"])


@pytest.fixture(scope="module")
def vl_model():
    yield load_model(open_model_folder(VL), "cpu", 1)
    clear_model_cache()


def _text(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _image(name: str) -> vision.ImageInput:
    return vision.load_image(str(IMAGES / name))


def test_a_vision_turn_answers_as_the_engine_and_the_reference(vl_model):
    conversation = Conversation(vl_model)
    answer = _text(conversation.send(QUESTION, OPTIONS, images=[_image("red-blue.png")]))
    assert answer == CASE["text"]  # transformers' greedy reference
    assert conversation.last.prompt_tokens == len(CASE["prompt_ids"])
    assert conversation.last.reused_tokens == 0  # a multimodal prompt is fed whole


def test_later_turns_keep_the_image_and_equal_a_fresh_engine_run(vl_model):
    conversation = Conversation(vl_model, system="Be brief.")
    first = _text(conversation.send("hello", OPTIONS))  # text: the kept generator
    image = _image("checker.png")
    second = _text(conversation.send("What is this?", OPTIONS, images=[image]))
    third = _text(conversation.send("And its colors?", OPTIONS))
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "hello"}, {"role": "assistant", "content": first},
               {"role": "user", "content": vision.IMAGE_MARKER + "What is this?"}]
    assert second == _text(vl_model.stream(history, OPTIONS, images=[image]))
    history += [{"role": "assistant", "content": second},
                {"role": "user", "content": "And its colors?"}]
    assert third == _text(vl_model.stream(history, OPTIONS, images=[image]))
    # the image is in the third prompt: without it, the prompt is much shorter
    assert conversation.last.prompt_tokens == len(
        vl_model.encode(vl_model.render_prompt(vision.place_image_tags(history, 1, "qwen")))
    ) - 1 + RECORDED["tokens_per_image"]
    saved = conversation.to_json()["messages"]
    assert saved[3] == {"role": "user", "content": "What is this?", "images": [image.label]}
    conversation.clear()
    assert not conversation.has_images
    after = _text(conversation.send("hello", OPTIONS))
    assert after == first


def test_an_image_error_leaves_the_history_as_it_was(vl_model):
    conversation = Conversation(vl_model)
    broken = vision.image_from_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "broken.png")
    with pytest.raises(vision.ImageError, match="could not process"):
        conversation.send("x", OPTIONS, images=[broken])
    assert conversation.turns == [] and conversation.turn_images == []


def test_slash_image_in_a_piped_session():
    image = IMAGES / CASE["images"][0]
    script = f"/image {image}\n{QUESTION}\n/image /nope.png\n/image\n"
    result = run_cli("chat", "-m", str(VL), "--max-tokens", str(RECORDED["max_new_tokens"]),
                     "--threads", "1", stdin=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == CASE["text"] + "\n"
    assert "Attached" in result.stderr and "does not exist" in result.stderr
    assert "Attached for the next message: none" in result.stderr


def test_slash_image_on_a_text_only_model_is_refused_and_the_session_goes_on():
    script = f"/image {IMAGES / 'checker.png'}\n/help\n"
    result = run_cli("chat", "-m", str(MODELS / "tiny-qwen2-fp32"), "--threads", "1", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "text-only" in result.stderr and "/image PATH" in result.stderr
