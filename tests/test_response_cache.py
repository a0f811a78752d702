"""agentic-flow's response `cache`: an identical deterministic request answered from disk, with
nothing sent; a changed option, sampling without a seed, an expired entry or an invalid answer
are not."""

from __future__ import annotations

import json

from agentic_onnx.core.generation.events import Finish, TextDelta, Usage
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.response import Response
from agentic_onnx.router.response_cache import CacheSettings, ResponseCache, cache_key, replay

from .conftest import run_cli
from .router_support import FAST_RETRY, openai_fake  # noqa: F401 - fixture

ASK = ["run", "--provider", "vllm", "-t", "Say hello.", "--json"]


def config(fake, home, **cache) -> None:  # noqa: ANN001
    (home / "config.json").write_text(json.dumps({
        "providers": {"vllm": {"type": "openai", "baseUrl": fake.base_url, "timeout": 5000,
                               "models": {"default": "served-model"}}},
        "cache": {"enabled": True, "ttl": 3600, "maxSize": 10, "strategy": "lru", **cache},
        "retry": dict(FAST_RETRY)}), encoding="utf-8")


def ask(*extra: str) -> dict:
    result = run_cli(*ASK, *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_identical_greedy_request_is_answered_from_the_cache(openai_fake, hermetic_env):  # noqa: F811
    from agentic_onnx.router import usage as usage_log

    config(openai_fake, hermetic_env)
    first, second = ask(), ask()
    assert len(openai_fake.requests) == 1  # the second was not sent
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["text"] == first["text"] == "Hello from the cloud."
    assert second["usage"] == first["usage"] and second["cost_usd"] == 0.0
    assert (second["provider"], second["model"]) == ("vllm", "served-model")
    rows = usage_log.rows()
    assert [(row["cached"], row["attempts"]) for row in rows] == [(0, 1), (1, 0)]
    ask("--max-tokens", "7")  # another option: another request
    ask("--temperature", "0.7")  # sampling without a seed: never cached
    ask("--temperature", "0.7")
    assert len(openai_fake.requests) == 4
    ask("--temperature", "0.7", "--seed", "3")
    assert ask("--temperature", "0.7", "--seed", "3")["cached"] is True
    assert len(openai_fake.requests) == 5


def test_an_expired_entry_is_asked_again(openai_fake, hermetic_env):  # noqa: F811
    config(openai_fake, hermetic_env, ttl=0)
    ask()
    assert ask()["cached"] is False
    assert len(openai_fake.requests) == 2


def test_without_the_config_nothing_is_cached(openai_fake, hermetic_env):  # noqa: F811
    config(openai_fake, hermetic_env, enabled=False)
    ask(), ask()
    assert len(openai_fake.requests) == 2
    assert not (hermetic_env / "response-cache.db").exists()


def test_the_least_recently_used_entries_go_past_max_size(tmp_path):
    cache = ResponseCache(CacheSettings(3600, 2), tmp_path / "cache.db")
    answers = {}
    for word in ("one", "two", "three"):
        request = ChatRequest.of([{"role": "user", "content": word}], options=build_options())
        key = cache_key(request, "p", "m")
        response = Response(iter([TextDelta(word), Usage(1, 1), Finish("stop")]), "p", "m")
        cache.put(key, response.consume())
        answers[word] = key
        if word == "two":
            assert cache.get(answers["one"]) is not None  # "one" used: "two" is the oldest now
    assert cache.get(answers["two"]) is None
    kept = cache.get(answers["one"])
    assert [event.text for event in replay(kept) if isinstance(event, TextDelta)] == ["one"]
    assert cache.get(answers["three"]) is not None


def test_a_fallbacks_answer_is_not_kept_as_the_first_providers(openai_fake, hermetic_env):  # noqa: F811
    from .fake_cloud import status
    from .router_support import TINY

    data = {"defaultProvider": "vllm", "fallbackChain": ["vllm", "onnx"],
            "providers": {"onnx": {"models": {"default": str(TINY)}},
                          "vllm": {"type": "openai", "baseUrl": openai_fake.base_url,
                                   "timeout": 5000, "maxRetries": 0,
                                   "models": {"default": "served-model"}}},
            "cache": {"enabled": True, "ttl": 3600, "maxSize": 10}, "retry": dict(FAST_RETRY)}
    (hermetic_env / "config.json").write_text(json.dumps(data), encoding="utf-8")
    openai_fake.script(status(500))
    ask_route = ["run", "-t", "Say hello.", "--json", "--max-tokens", "4"]
    fell_back = json.loads(run_cli(*ask_route).stdout)
    assert fell_back["provider"] == "onnx" and fell_back["cached"] is False
    again = json.loads(run_cli(*ask_route).stdout)  # vllm is asked, not the local answer replayed
    assert again["provider"] == "vllm" and again["cached"] is False
    assert json.loads(run_cli(*ask_route).stdout)["cached"] is True  # now vllm's own answer


def test_a_cached_answer_is_given_past_a_budget_limit(openai_fake, hermetic_env):  # noqa: F811
    from agentic_onnx.router.usage import UsageRecord, log_request

    config(openai_fake, hermetic_env)
    first = ask()
    data = json.loads((hermetic_env / "config.json").read_text())
    data["routing"] = {"costOptimization": {"budgetLimits": {"daily": 1.0}}}
    (hermetic_env / "config.json").write_text(json.dumps(data), encoding="utf-8")
    log_request(UsageRecord(command="run", provider="vllm", model="served-model", rule=None,
                            private=False, local=False, prompt_tokens=1, completion_tokens=1,
                            cost_usd=2.0, latency_ms=1.0, ttft_ms=1.0, outcome="ok", error=None,
                            attempts=1, prompt=None, cached=False))  # today: over the limit
    cached = ask()
    assert cached["cached"] is True and cached["text"] == first["text"]
    assert len(openai_fake.requests) == 1
    refused = run_cli(*ASK, "--max-tokens", "9")  # not cached: refused by the budget
    assert refused.returncode != 0 and len(openai_fake.requests) == 1
