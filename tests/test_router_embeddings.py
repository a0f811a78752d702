"""Embeddings through the router: an OpenAI-compatible provider's `/embeddings` against the
loopback fake, with chat's privacy guarantee; the default stays the local engine.

The fakes count requests: every refusal asserts the count stayed zero.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agentic_onnx.core.errors import ExitCode, UsageError
from agentic_onnx.router.embeddings import route_embeddings
from agentic_onnx.router.errors import MissingKeyError, ProviderError
from agentic_onnx.router.usage import rows

from .conftest import MODELS, run_cli
from .fake_cloud import Behaviour, FakeOpenAI, fake_vector, status
from .router_support import FAST_RETRY, openrouter_fake, running, write_config  # noqa: F401

FOLDER = MODELS / "tiny-bert-embed"
ORACLE = json.loads((MODELS / "expected_embeddings.json").read_text(encoding="utf-8"))
KEY = "sk-myserver-SECRET-0123456789abcdef"
TEXTS = ["alpha", "beta gamma", "delta"]


@pytest.fixture
def myserver():
    yield from running(FakeOpenAI(), KEY)


@pytest.fixture
def bystander():
    yield from running(FakeOpenAI())


def config(fake: FakeOpenAI, local: bool = False, **top: object) -> dict:
    entry = {"type": "openai", "baseUrl": fake.base_url, "apiKey": "${MYSERVER_KEY}",
             "models": {"embedding": "fake-embed"}, "timeout": 2000, "maxRetries": 1}
    if local:
        entry["local"] = True
    return {"version": "1.0", "providers": {"myserver": entry}, "retry": dict(FAST_RETRY),
            **top}


def embed(path, **arguments):
    return route_embeddings(TEXTS, config_path=str(path), sleep=lambda seconds: None,
                            **{"provider": "myserver", **arguments})


def last_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.strip()][-1]


def test_a_provider_returns_its_vectors_in_order_and_only_it_gets_the_key(
        tmp_path, myserver, bystander):
    data = config(myserver)
    data["providers"]["other"] = {"type": "openai", "baseUrl": bystander.base_url,
                                  "models": {"embedding": "other-embed"}}
    path = write_config(tmp_path, data)
    result = run_cli("embed", "--provider", "myserver", "--config", str(path), *TEXTS,
                     env={"MYSERVER_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        fake_vector(text) for text in TEXTS]
    (request,) = myserver.requests
    assert request["path"] == "/v1/embeddings"
    assert request["body"] == {"model": "fake-embed", "input": TEXTS, "encoding_format": "float"}
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert bystander.count == 0
    assert KEY not in result.stdout + result.stderr
    (row,) = rows()
    assert (row["command"], row["provider"], row["model"], row["outcome"]) == (
        "embed", "myserver", "fake-embed", "ok")
    assert (row["prompt_tokens"], row["cost_usd"], row["local"], row["private"]) == (36, None, 0, 0)


def test_json_output_names_the_provider_and_model(tmp_path, myserver, monkeypatch):
    monkeypatch.setenv("MYSERVER_KEY", KEY)
    path = write_config(tmp_path, config(myserver))
    result = run_cli("embed", "-p", "myserver", "--config", str(path), "--json",
                     "--model", "other-model", "--dimensions", "3", stdin="one\ntwo\n")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["provider"], data["model"], data["dimension"]) == ("myserver", "other-model", 3)
    assert [row["embedding"] for row in data["data"]] == [fake_vector("one", 3),
                                                          fake_vector("two", 3)]
    assert data["usage"] == {"prompt_tokens": 24, "total_tokens": 24}
    assert data["cost_usd"] is None and data["attempts"][0]["outcome"] == "ok"
    assert myserver.requests[0]["body"]["dimensions"] == 3


def test_a_configured_price_gives_a_cost(tmp_path, myserver, monkeypatch):
    monkeypatch.setenv("MYSERVER_KEY", KEY)
    data = config(myserver)
    data["providers"]["myserver"]["prices"] = {"fake-embed": {"input": 0.02, "output": 0}}
    run = embed(write_config(tmp_path, data))
    assert run.prompt_tokens == 36 and run.cost_usd == round(36 * 0.02 / 1e6, 6)


def test_a_private_request_to_a_provider_that_is_not_local_is_refused(tmp_path, myserver):
    path = write_config(tmp_path, config(myserver))
    for flag in ("--local-only", "--privacy=high"):
        result = run_cli("embed", "--provider", "myserver", "--config", str(path), flag,
                         "secret memo", env={"MYSERVER_KEY": KEY})
        assert result.returncode == ExitCode.USAGE_ERROR, result.stderr  # as chat refuses it
        assert "--provider myserver is a cloud provider, but this embedding request is " \
            "private" in last_error(result.stderr)
    assert myserver.count == 0 and rows() == []


@pytest.mark.parametrize("source", ["config privacy", "config localOnly", "rule"])
def test_every_privacy_source_of_the_config_refuses(tmp_path, myserver, monkeypatch, source):
    monkeypatch.setenv("MYSERVER_KEY", KEY)
    top = {"config privacy": {"privacy": "high"}, "config localOnly": {"localOnly": True},
           "rule": {"routing": {"rules": [{"condition": {}, "action": {"localOnly": True}}]}}}
    path = write_config(tmp_path, config(myserver, **top[source]))
    with pytest.raises(UsageError, match="nothing was sent"):
        embed(path)
    assert myserver.count == 0


def test_a_local_provider_on_loopback_is_allowed_under_privacy(tmp_path, myserver):
    path = write_config(tmp_path, config(myserver, local=True, privacy="high"))
    result = run_cli("embed", "--provider", "myserver", "--config", str(path),
                     "--privacy", "high", *TEXTS, env={"MYSERVER_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3 and myserver.count == 1
    (row,) = rows()
    assert (row["private"], row["local"], row["cost_usd"]) == (1, 1, 0.0)


def test_agentic_flow_ollama_preset_is_local_under_privacy(tmp_path, bystander):
    data = {"providers": {"ollama": {"baseUrl": bystander.base_url}}, "localOnly": True}
    run = route_embeddings(TEXTS, provider="ollama", model="nomic-embed-text",
                           config_path=str(write_config(tmp_path, data, "router.config.json")))
    assert run.vectors == [fake_vector(text) for text in TEXTS] and run.local and run.private
    assert bystander.requests[0]["body"]["model"] == "nomic-embed-text"


MALFORMED = {
    "too few": {"data": [{"index": 0, "embedding": [0.1, 0.2]}]},
    "not a list": {"data": {"index": 0}},
    "no data": {"object": "list"},
    "a string": {"data": [{"embedding": "AAAA"}] * 3},
    "non-numbers": {"data": [{"embedding": [0.1, "x"]}] * 3},
    "booleans": {"data": [{"embedding": [True, False]}] * 3},
    "not finite": {"data": [{"embedding": [float("nan"), 1.0]}] * 3},
    "huge int": {"data": [{"embedding": [10 ** 400, 1]}] * 3},
    "ragged": {"data": [{"embedding": [0.1]}, {"embedding": [0.1, 0.2]}, {"embedding": [0.3]}]},
    "duplicate index": {"data": [{"index": 0, "embedding": [0.1]}] * 3},
    "index out of range": {"data": [{"index": 7, "embedding": [0.1]}] * 3},
    "not objects": {"data": [[0.1], [0.2], [0.3]]},
    "an error object": {"error": {"message": "model is not an embedding model", "code": 400}},
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_answer_is_a_one_line_provider_error(tmp_path, myserver, monkeypatch, case):
    monkeypatch.setenv("MYSERVER_KEY", KEY)
    myserver.default = Behaviour("json", body=MALFORMED[case])
    with pytest.raises(ProviderError) as caught:
        embed(write_config(tmp_path, config(myserver)))
    assert "\n" not in caught.value.one_line()
    assert myserver.count == 1  # not retried: asking again gives the same answer


def test_a_malformed_answer_on_the_command_line(tmp_path, myserver):
    myserver.default = Behaviour("json", body=MALFORMED["non-numbers"])
    path = write_config(tmp_path, config(myserver))
    result = run_cli("embed", "-p", "myserver", "--config", str(path), *TEXTS,
                     env={"MYSERVER_KEY": KEY})
    assert result.returncode == ExitCode.PROVIDER_ERROR and result.stdout == ""
    assert "invalid embeddings response: data[0].embedding holds something other than finite" \
        in last_error(result.stderr)
    (row,) = rows()
    assert row["outcome"] == "error" and "invalid embeddings" in row["error"]


def test_rows_come_back_in_input_order_whatever_the_server_order(tmp_path, myserver,
                                                                 monkeypatch):
    monkeypatch.setenv("MYSERVER_KEY", KEY)
    body = {"data": [{"index": 2, "embedding": [3.0]}, {"index": 0, "embedding": [1.0]},
                     {"index": 1, "embedding": [2]}]}
    myserver.default = Behaviour("json", body=body)
    assert embed(write_config(tmp_path, config(myserver))).vectors == [[1.0], [2.0], [3.0]]


def test_retries_and_batches_reuse_the_chat_path(tmp_path, myserver, monkeypatch):
    from agentic_onnx.router.providers import openai_embeddings

    monkeypatch.setenv("MYSERVER_KEY", KEY)
    monkeypatch.setattr(openai_embeddings, "MAX_INPUTS_PER_REQUEST", 2)
    myserver.script(Behaviour(), status(503))  # the second batch fails once, then succeeds
    run = embed(write_config(tmp_path, config(myserver)))
    assert run.vectors == [fake_vector(text) for text in TEXTS]
    assert [request["body"]["input"] for request in myserver.requests] == [
        TEXTS[:2], TEXTS[2:], TEXTS[2:]]
    assert run.attempts[0].tries == 2


def test_anthropic_has_no_embeddings_api():
    result = run_cli("embed", "--provider", "anthropic", "hello")
    assert result.returncode == ExitCode.USAGE_ERROR
    line = last_error(result.stderr)
    assert "Provider 'anthropic' (anthropic) has no embeddings API" in line
    assert "onnx" in line and "openrouter" in line


def test_a_remote_model_must_be_named_and_a_key_present(tmp_path, myserver, openrouter_fake,
                                                        monkeypatch):
    data = config(myserver)
    del data["providers"]["myserver"]["models"]
    with pytest.raises(UsageError, match="No embedding model named for provider 'myserver'"):
        embed(write_config(tmp_path, data))
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    data = {"version": "1.0", "providers": {"openrouter": {"baseUrl": openrouter_fake.base_url}}}
    with pytest.raises(MissingKeyError):
        route_embeddings(["x"], provider="openrouter", model="openai/text-embedding-3-small",
                         config_path=str(write_config(tmp_path, data)))
    assert myserver.count == 0 and openrouter_fake.count == 0 and rows() == []


def test_openrouter_embeddings_carry_its_key_and_headers(tmp_path, openrouter_fake, monkeypatch):
    from .router_support import OPENROUTER_KEY

    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_KEY)
    data = {"version": "1.0", "providers": {"openrouter": {"baseUrl": openrouter_fake.base_url}}}
    run = route_embeddings(["x"], provider="openrouter", model="openai/text-embedding-3-small",
                           config_path=str(write_config(tmp_path, data)))
    assert run.vectors == [fake_vector("x")] and not run.local
    (request,) = openrouter_fake.requests
    assert request["path"] == "/api/v1/embeddings" and request["headers"]["x-title"]


@pytest.mark.parametrize("extra", [[], ["--provider", "onnx"], ["-p", "onnx", "--privacy",
                                                                 "high", "--local-only"]])
def test_the_default_is_still_the_local_engine(extra):
    texts = [case["text"] for case in ORACLE["cases"][:2]]
    result = run_cli("embed", "-m", str(FOLDER), "--json", "--threads", "1", *extra, *texts)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["provider"], data["model"]) == ("onnx", "tiny-bert-embed")
    for row, case in zip(data["data"], ORACLE["cases"][:2]):
        assert np.abs(np.array(row["embedding"]) - np.array(case["mean"])).max() < 1e-6
    assert rows() == []  # local engine runs are not logged, as before
