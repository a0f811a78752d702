"""Images through `serve`, with the real OpenAI and Anthropic clients: base64 images reach the
vision model (the answer is transformers' reference), URLs are refused (we never fetch), and a
text-only model refuses images, each in its API's own error format."""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest

from .conftest import FIXTURES, MODELS
from .server_support import Server, http

VL, TEXT = "tiny-qwen25vl", "tiny-qwen2-fp32"
RECORDED = json.loads((MODELS / "expected_vision.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in RECORDED["cases"]}
ONE = CASES["one_image"]
QUESTION = ONE["messages"][0]["content"].replace(RECORDED["image_tag"], "")
MAX_TOKENS = RECORDED["max_new_tokens"]


def b64(name: str) -> str:
    return base64.b64encode((FIXTURES / "images" / name).read_bytes()).decode()


@pytest.fixture(scope="module")
def server():
    served = Server("--model", str(MODELS / VL), "--model", str(MODELS / TEXT),
                    "--threads", "1").start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def oai(server):
    return server.openai_client()


@pytest.fixture(scope="module")
def claude(server):
    return server.anthropic_client()


def question(case: dict) -> str:
    return case["messages"][0]["content"].replace(RECORDED["image_tag"], "")


def openai_parts(*names: str, url: str | None = None, text: str = QUESTION) -> list[dict]:
    images = [{"type": "image_url", "image_url": {"url": url or f"data:image/png;base64,{b64(n)}"}}
              for n in names]
    return images + [{"type": "text", "text": text}]


def anthropic_blocks(*names: str, source: dict | None = None) -> list[dict]:
    images = [{"type": "image", "source": source or {"type": "base64", "media_type": "image/png",
                                                     "data": b64(n)}} for n in names]
    return images + [{"type": "text", "text": QUESTION}]


def test_openai_image_url_data_urls_reach_the_model(oai):
    for case in (ONE, CASES["two_images"]):
        reply = oai.chat.completions.create(
            model=VL, max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": openai_parts(*case["images"], text=question(case))}])
        assert reply.choices[0].message.content == case["text"]
        assert reply.usage.prompt_tokens == len(case["prompt_ids"])


def test_openai_image_stream_and_later_text_request(oai):
    stream = oai.chat.completions.create(
        model=VL, max_tokens=MAX_TOKENS, stream=True,
        messages=[{"role": "user", "content": openai_parts(*ONE["images"])}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ONE["text"]
    text = oai.chat.completions.create(model=VL, max_tokens=4,
                                       messages=[{"role": "user", "content": QUESTION}])
    assert text.choices[0].message.content != ONE["text"]  # no image now: another answer
    assert text.usage.prompt_tokens < len(ONE["prompt_ids"])


def test_anthropic_base64_image_blocks_reach_the_model(claude):
    message = claude.messages.create(model=VL, max_tokens=MAX_TOKENS, messages=[
        {"role": "user", "content": anthropic_blocks(*ONE["images"])}])
    assert message.content[0].text == ONE["text"]
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == len(ONE["prompt_ids"])


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://127.0.0.1:9/cat.png"])
def test_openai_remote_urls_are_refused(oai, url):
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model=VL, max_tokens=4, messages=[
            {"role": "user", "content": openai_parts("x", url=url)}])
    error = raised.value.body
    assert error["type"] == "invalid_request_error"
    assert "does not download images from URLs" in error["message"]
    assert error["param"] == "messages.0.content.0.image_url"


def test_anthropic_url_sources_are_refused(claude):
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.create(model=VL, max_tokens=4, messages=[{"role": "user", "content":
            anthropic_blocks("x", source={"type": "url", "url": "https://example.com/cat.png"})}])
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "does not download images from URLs" in raised.value.body["error"]["message"]


def test_images_for_a_text_only_model_are_a_400(oai, claude):
    with pytest.raises(openai.BadRequestError, match="text-only"):
        oai.chat.completions.create(model=TEXT, max_tokens=4, messages=[
            {"role": "user", "content": openai_parts(*ONE["images"])}])
    with pytest.raises(anthropic.BadRequestError, match="text-only"):
        claude.messages.create(model=TEXT, max_tokens=4, messages=[
            {"role": "user", "content": anthropic_blocks(*ONE["images"])}])


@pytest.mark.parametrize("url, message", [
    ("data:image/png;base64,@@@", "not valid base64"),
    (f"data:image/png;base64,{base64.b64encode(b'hello').decode()}", "not a PNG, JPEG or BMP"),
    ("ftp://example.com/a.png", "expected a data:image"),
])
def test_bad_image_data_is_a_400(server, url, message):
    status, _, body = http("POST", f"{server.url}/v1/chat/completions", {
        "model": VL, "messages": [{"role": "user", "content": openai_parts("x", url=url)}]})
    assert status == 400 and message in body["error"]["message"]


def test_a_corrupt_image_is_a_400_from_the_model(server):
    bad = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10).decode()
    status, _, body = http("POST", f"{server.url}/v1/messages", {
        "model": VL, "max_tokens": 4, "messages": [{"role": "user", "content": anthropic_blocks(
            "x", source={"type": "base64", "media_type": "image/png", "data": bad})}]})
    assert status == 400 and body["type"] == "error"
    assert "could not process" in body["error"]["message"]
