"""The engine against an independent oracle: greedy tokens recorded from transformers."""

from __future__ import annotations

import pytest

from agentic_onnx.core.generation.engine import load_model
from agentic_onnx.core.generation.events import Finish, TextDelta, Usage
from agentic_onnx.core.models.model_folder import open_model_folder
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.response import Response

from .conftest import MODELS, expected_cases

FP32_CASES = expected_cases()


def loaded(name: str):
    return load_model(open_model_folder(MODELS / name), "cpu", threads=1)


@pytest.mark.parametrize(("model", "case"), FP32_CASES, ids=[f"{m}-{c['name']}" for m, c in FP32_CASES])
def test_greedy_tokens_equal_transformers(model, case, expected):
    engine = loaded(model)
    prompt = engine.render_prompt(case["messages"])
    assert prompt == case["prompt"]  # the model's own chat template, as transformers applies it
    prompt_ids = engine.encode(prompt)
    assert prompt_ids == case["prompt_ids"]
    options = build_options(max_tokens=expected["max_new_tokens"])
    assert list(engine.generate_tokens(prompt_ids, options)) == case["generated_ids"]


@pytest.mark.parametrize(("model", "case"), FP32_CASES, ids=[f"{m}-{c['name']}" for m, c in FP32_CASES])
def test_streamed_text_equals_transformers_text_and_finish_is_honest(model, case, expected):
    engine = loaded(model)
    options = build_options(max_tokens=expected["max_new_tokens"])
    events = list(engine.stream(case["messages"], options))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == case["text"]
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage == Usage(len(case["prompt_ids"]), len(case["generated_ids"]))
    assert events[-1] == Finish("stop" if case["eos_reached"] else "length")


def test_int4_fixture_loads_and_generates():
    engine = loaded("tiny-phi3-int4")
    response = Response(engine.stream([{"role": "user", "content": "Hello"}],
                                      build_options(max_tokens=12)), "onnx", "tiny-phi3-int4")
    response.consume()
    assert response.usage.completion_tokens > 0
    assert response.text.strip()


def test_stop_string_ends_generation_before_the_string(expected):
    model, case = next((m, c) for m, c in FP32_CASES if not c["eos_reached"])
    engine = loaded(model)
    full = case["text"]
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = full.index(stop)
    response = Response(engine.stream(case["messages"], build_options(max_tokens=24, stop=[stop])),
                        "onnx", model)
    response.consume()
    assert response.text == full[:cut]
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens < len(case["generated_ids"])


def test_max_tokens_caps_generation_with_finish_length():
    model, case = FP32_CASES[0]
    response = Response(loaded(model).stream(case["messages"], build_options(max_tokens=3)),
                        "onnx", model)
    response.consume()
    assert response.usage.completion_tokens == 3
    assert response.finish_reason == "length"


def test_multibyte_characters_survive_token_by_token_streaming():
    """Decode a multi-byte text one token at a time: every chunk is whole characters."""
    engine = loaded("tiny-phi3-fp32")
    text = "Café naïve — 東京に行きます 🚀✨ ¿Qué tal? Привет!"
    tokens = engine.encode(text)
    assert len(tokens) > len(text.encode("utf-8")) // 4  # byte-level pieces, so splits happen
    stream = engine.tokenizer.create_stream()
    chunks = [stream.decode(token) for token in tokens]
    assert "".join(chunks) == text
    assert all("\ufffd" not in chunk for chunk in chunks)


def test_prompt_longer_than_context_is_a_clear_error():
    from agentic_onnx.core.errors import PromptTooLongError

    engine = loaded("tiny-phi3-fp32")
    long_text = "word " * (engine.folder.context_length + 10)
    with pytest.raises(PromptTooLongError) as caught:
        list(engine.stream([{"role": "user", "content": long_text}], build_options()))
    assert str(engine.folder.context_length) in caught.value.one_line()


def test_sampling_with_a_seed_is_reproducible():
    model, case = FP32_CASES[0]
    engine = loaded(model)
    options = build_options(temperature=1.0, top_k=20, seed=7, max_tokens=16)
    first = Response(engine.stream(case["messages"], options), "onnx", model).consume().text
    second = Response(engine.stream(case["messages"], options), "onnx", model).consume().text
    assert first == second
