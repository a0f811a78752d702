"""Routing rules: every condition key, every action key, first match wins, the modes, explain."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.complexity import estimate_complexity
from agentic_onnx.router.config import parse_config
from agentic_onnx.router.execute import route_and_stream
from agentic_onnx.router.rules import RouteContext, RouteFlags, decide

from .router_support import (  # noqa: F401 - fixtures
    TINY,
    anthropic_fake,
    cloud_keys,
    hybrid_config,
    openrouter_fake,
    route,
    write_config,
)

PROVIDERS = {"onnx": {"models": {"default": "phi-3-mini-4k-cpu", "fast": "tiny-local"}},
             "anthropic": {}, "openrouter": {}}


def config_with(rules: list[dict], **extra: object):
    return parse_config({"defaultProvider": "openrouter", "providers": PROVIDERS,
                         "fallbackChain": ["openrouter", "anthropic", "onnx"],
                         "routing": {"rules": rules}, **extra}).config


def one_rule(condition: dict, provider: str = "anthropic") -> list[dict]:
    return [{"condition": condition, "action": {"provider": provider}, "reason": "matched"}]


@pytest.mark.parametrize(("condition", "hit", "miss"), [
    ({"privacy": "high"}, {"privacy": "high"}, {}),
    ({"privacy": "normal"}, {}, {"privacy": "high"}),
    ({"localOnly": True}, {"local_only": True}, {}),
    ({"localOnly": False}, {}, {"local_only": True}),
    ({"agentType": ["coder", "reviewer"]}, {"agent": "reviewer"}, {"agent": "researcher"}),
    ({"agentType": "coder"}, {"agent": "coder"}, {}),
    ({"complexity": "high"}, {"complexity": "high"}, {"complexity": "low"}),
    ({"complexity": ["low", "medium"]}, {"complexity": "medium"}, {"complexity": "high"}),
    ({"requiresTools": True}, {"requires_tools": True}, {}),
    ({"agentType": ["coder"], "complexity": "low"}, {"agent": "coder", "complexity": "low"},
     {"agent": "coder", "complexity": "high"}),
])
def test_each_condition_key_is_enforced(condition, hit, miss):
    provider = "onnx" if condition.get("privacy") == "high" or condition.get("localOnly") \
        else "anthropic"
    config = config_with(one_rule(condition, provider))
    matched = decide(config, RouteFlags(**hit), "a task")
    assert (matched.rule, matched.provider, matched.reason) == ("routing.rules[0]", provider,
                                                                "matched")
    missed = decide(config, RouteFlags(**miss), "a task")
    assert missed.rule != "routing.rules[0]"


def test_first_match_wins():
    config = config_with([
        {"condition": {"complexity": "high"}, "action": {"provider": "anthropic"}},
        {"condition": {}, "action": {"provider": "onnx"}},
    ])
    assert decide(config, RouteFlags(complexity="high"), "x").provider == "anthropic"
    assert decide(config, RouteFlags(complexity="low"), "x").rule == "routing.rules[1]"


def test_actions_set_model_temperature_and_max_tokens():
    config = config_with([{"condition": {}, "action": {
        "provider": "anthropic", "model": "fast", "temperature": 0.3, "maxTokens": 99}}])
    decision = decide(config, RouteFlags(), "x")
    assert (decision.provider, decision.model) == ("anthropic", "claude-haiku-4-5")
    assert (decision.temperature, decision.max_tokens) == (0.3, 99)
    assert decide(config, RouteFlags(model="claude-opus-4-1"), "x").model == "claude-opus-4-1"


def test_no_rule_uses_the_default_then_the_chain():
    decision = decide(config_with([]), RouteFlags(), "x")
    assert decision.rule == "defaultProvider"
    assert [c.provider for c in decision.candidates] == ["openrouter", "anthropic", "onnx"]
    assert decision.candidates[0].model == "anthropic/claude-sonnet-4.5"


def test_explicit_provider_wins_and_has_no_fallback():
    config = config_with(one_rule({}, "anthropic"))
    decision = decide(config, RouteFlags(provider="onnx", model="fast"), "x")
    assert (decision.provider, decision.model, decision.rule) == ("onnx", "tiny-local",
                                                                  "--provider")
    assert len(decision.candidates) == 1
    with pytest.raises(UsageError, match="Unknown provider 'gemini'"):
        decide(config, RouteFlags(provider="gemini"), "x")


def test_a_model_folder_implies_the_local_provider():
    decision = decide(config_with(one_rule({}, "anthropic")), RouteFlags(model=str(TINY)), "x")
    assert decision.provider == "onnx" and decision.rule == "--model (a local folder)"


def test_a_rule_can_make_a_request_private_whatever_its_position():
    config = config_with([{"condition": {}, "action": {"provider": "anthropic"}},
                          {"condition": {"agentType": ["lawyer"]}, "action": {"localOnly": True}}])
    decision = decide(config, RouteFlags(agent="lawyer"), "x")
    assert decision.private and decision.privacy_source == "routing.rules[1]"
    assert [c.provider for c in decision.candidates] == ["onnx"]
    assert decision.rule == "privacy" and "anthropic is a cloud provider" in decision.reason


def test_manual_mode_ignores_rules_and_fallback():
    config = config_with(one_rule({}, "anthropic"), routing={"mode": "manual",
                                                             "rules": one_rule({}, "anthropic")})
    decision = decide(config, RouteFlags(), "x")
    assert decision.provider == "openrouter" and len(decision.candidates) == 1


def optimised(mode: str, **context: object):
    config = parse_config({"providers": {"onnx": {"models": {"default": "m"}},
                                         "anthropic": {"models": {"default": "claude-opus-4-1"}},
                                         "openrouter": {"models": {
                                             "default": "meta-llama/llama-3.1-8b-instruct"}}},
                           "routing": {"mode": mode}}).config
    return decide(config, RouteFlags(), "x", RouteContext(**context))


def test_cost_optimized_orders_by_price():
    assert [c.provider for c in optimised("cost-optimized").candidates] == \
        ["onnx", "openrouter", "anthropic"]


def test_quality_optimized_orders_by_tier():
    assert [c.provider for c in optimised("quality-optimized").candidates] == \
        ["anthropic", "openrouter", "onnx"]


def test_performance_optimized_orders_by_logged_latency():
    decision = optimised("performance-optimized",
                         latency_ms={"anthropic": 900.0, "openrouter": 300.0})
    assert [c.provider for c in decision.candidates] == ["openrouter", "anthropic", "onnx"]


def test_optimised_modes_skip_unusable_providers():
    decision = optimised("quality-optimized", usable=lambda name: name != "anthropic")
    assert [c.provider for c in decision.candidates] == ["openrouter", "onnx"]


@pytest.mark.parametrize(("task", "level"), [
    ("What is 2 + 2?", "low"),
    ("Summarise the following paragraph about the history of the printing press in Europe "
     "and list the three most important consequences for literacy and religion over the "
     "following two centuries, with one example for each of them please.", "medium"),
    ("Please debug this function.", "medium"),
    ("Design a distributed cache and analyze the trade-offs.", "high"),
    ("word " * 300, "high"),
    ("Fix:\n```python\nprint(1)\n```\nand refactor it", "high"),
])
def test_complexity_heuristic(task, level):
    assert estimate_complexity(task).level == level


def test_estimated_complexity_drives_rules_unless_given():
    config = config_with(one_rule({"complexity": "high"}, "anthropic"))
    hard = "Design a distributed cache and analyze the trade-offs."
    assert decide(config, RouteFlags(), hard).provider == "anthropic"
    decision = decide(config, RouteFlags(complexity="low"), hard)
    assert decision.provider == "openrouter" and decision.complexity_source == "--complexity"


@pytest.mark.usefixtures("cloud_keys")
def test_a_rule_routes_a_real_request_with_its_model(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake, defaultProvider="onnx")
    data["routing"]["rules"] = [{"condition": {"complexity": "high"},
                                 "action": {"provider": "openrouter", "model": "fast",
                                            "maxTokens": 33}}]
    config = write_config(tmp_path, data)
    routed = route_and_stream(ChatRequest.of([{"role": "user", "content": "x"}]),
                              RouteFlags(complexity="high"), config_path=str(config))
    routed.response.consume()
    body = openrouter_fake.requests[0]["body"]
    assert (body["model"], body["max_tokens"]) == ("meta-llama/llama-3.1-8b-instruct", 33)
    assert routed.response.provider == "openrouter" and anthropic_fake.count == 0
    route(config, complexity="high", max_tokens=8)  # --max-tokens beats the rule's maxTokens
    assert openrouter_fake.requests[1]["body"]["max_tokens"] == 8
    local = route(config, complexity="low")
    assert local.response.provider == "onnx" and openrouter_fake.count == 2


def test_router_explain_sends_nothing(tmp_path, anthropic_fake, monkeypatch):
    from agentic_onnx.cli.app import app

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-explain-000000")
    data = hybrid_config(anthropic_fake)
    data["routing"]["rules"] = one_rule({"agentType": ["coder"]}, "anthropic")
    config = write_config(tmp_path, data)
    runner = CliRunner()
    result = runner.invoke(app, ["router", "explain", "--task", "Write a sort", "--agent", "coder",
                                 "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert (decision["provider"], decision["rule"], decision["reason"]) == \
        ("anthropic", "routing.rules[0]", "matched")
    assert decision["sent"] is False and anthropic_fake.count == 0
    human = runner.invoke(app, ["router", "explain", "--task", "Write a sort", "--privacy", "high",
                                "--config", str(config)])
    assert human.exit_code == 0, human.output
    assert "private     yes (--privacy high)" in human.stdout
    assert "excluded    anthropic: cloud provider" in human.stdout
    dry = runner.invoke(app, ["run", "--task", "Write a sort", "--agent", "coder", "--dry-run",
                              "--config", str(config), "--json"])
    assert json.loads(dry.stdout)["provider"] == "anthropic" and anthropic_fake.count == 0
