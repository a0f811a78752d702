"""`POST /v1/embeddings` through the real OpenAI client (float and base64), concurrent
clients, and the documented 400s, against vectors from a transformers forward pass."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest

from .conftest import MODELS
from .server_support import Server, http

FOLDER = MODELS / "tiny-bert-embed"
ORACLE = json.loads((MODELS / "expected_embeddings.json").read_text(encoding="utf-8"))
CASES = ORACLE["cases"]
TEXTS = [case["text"] for case in CASES]
EXPECTED = np.array([case["mean"] for case in CASES])
KEY = "sk-local-test"


def decoded(embedding: list[float] | str) -> np.ndarray:
    """A float list, or OpenAI's base64: little-endian float32."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.array(embedding)


@pytest.fixture(scope="module")
def server():
    served = Server("--model", str(MODELS / "tiny-phi3-fp32"), "--model", str(FOLDER),
                    "--threads", "1", "--api-key", KEY).start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.openai_client(api_key=KEY)


def test_a_list_of_texts_in_float_and_base64(client):
    for encoding in ("float", "base64"):  # asked for explicitly, base64 comes back as text
        response = client.embeddings.create(model="tiny-bert-embed", input=TEXTS,
                                            encoding_format=encoding)
        vectors = np.array([decoded(item.embedding) for item in response.data])
        assert [item.index for item in response.data] == list(range(len(TEXTS)))
        assert np.abs(vectors - EXPECTED).max() < 1e-5
        assert response.model == "tiny-bert-embed"
        tokens = sum(case["token_count"] for case in CASES)
        assert (response.usage.prompt_tokens, response.usage.total_tokens) == (tokens, tokens)
        assert response.model_extra["truncated_inputs"] == [
            i for i, case in enumerate(CASES) if case["truncated"]]


def test_the_sdk_default_is_base64_and_a_string_input_works(server, client):
    response = client.embeddings.create(model="tiny-bert-embed", input=TEXTS[0])  # SDK decodes
    assert np.abs(np.array(response.data[0].embedding) - EXPECTED[0]).max() < 1e-5
    status, _, raw = http("POST", f"{server.url}/v1/embeddings", {"input": TEXTS[0],
                          "encoding_format": "base64"}, headers={"authorization": f"Bearer {KEY}"})
    assert status == 200 and isinstance(raw["data"][0]["embedding"], str)


def test_concurrent_clients_get_their_own_vectors(client):
    def one(index: int) -> tuple[int, list[float]]:
        response = client.embeddings.create(model="tiny-bert-embed", input=[TEXTS[index]],
                                            encoding_format="float")
        return index, response.data[0].embedding

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, [i % len(TEXTS) for i in range(24)]))
    for index, vector in results:
        assert np.abs(np.array(vector) - EXPECTED[index]).max() < 1e-5


def test_models_lists_both_kinds(client):
    assert {m.id for m in client.models.list().data} == {"tiny-phi3-fp32", "tiny-bert-embed"}


@pytest.mark.parametrize(("body", "param", "needle"), [
    ({"input": []}, "input", "the list is empty"),
    ({"input": ["a", 3]}, "input.1", "expected a string"),
    ({"input": [[1, 2, 3]]}, "input.0", "token arrays are not supported"),
    ({"input": ["a"] * 2049}, "input", "at most 2048"),
    ({"input": "a", "model": "tiny-phi3-fp32"}, "model", "is a chat model"),
    ({"input": "a", "dimensions": 8}, "dimensions", "does not support other dimensions"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", "float"),
    ({"model": "tiny-bert-embed"}, "input", "Field required"),
])
def test_bad_input_is_a_400_naming_the_field(server, body, param, needle):
    status, _, answer = http("POST", f"{server.url}/v1/embeddings", body,
                             headers={"authorization": f"Bearer {KEY}"})
    assert status == 400, answer
    error = answer["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert needle in error["message"]


def test_the_sdk_raises_bad_request_and_auth_errors(server, client):
    with pytest.raises(openai.BadRequestError, match="is a chat model"):
        client.embeddings.create(model="tiny-phi3-fp32", input="hello")
    with pytest.raises(openai.AuthenticationError):
        server.openai_client(api_key="wrong").embeddings.create(model="tiny-bert-embed", input="x")


def test_an_embeddings_only_server_refuses_chat_and_a_chat_server_refuses_embeddings():
    embeddings_only = Server("--model", str(FOLDER), "--threads", "1").start()
    try:
        client = embeddings_only.openai_client()
        assert client.embeddings.create(model="tiny-bert-embed", input="hello").model == \
            "tiny-bert-embed"
        with pytest.raises(openai.NotFoundError, match="not served here"):  # never another model
            client.embeddings.create(model="text-embedding-3-small", input="hello")
        with pytest.raises(openai.BadRequestError, match="embedding models only"):
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    finally:
        embeddings_only.stop()
    chat_only = Server("--model", str(MODELS / "tiny-phi3-fp32"), "--threads", "1").start()
    try:
        with pytest.raises(openai.BadRequestError, match="serves no embedding model"):
            chat_only.openai_client().embeddings.create(model="x", input="hello")
    finally:
        chat_only.stop()
