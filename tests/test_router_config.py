"""The router config: lookup order, ${VAR} substitution, validation errors, defaults, commands."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.core.errors import ExitCode
from agentic_onnx.router.config import find_config, load_config, parse_config, redacted
from agentic_onnx.router.errors import ConfigError

from .conftest import run_cli
from .router_support import ANTHROPIC_KEY, write_config

SEED_HYBRID = {
    "version": "1.0", "defaultProvider": "anthropic",
    "fallbackChain": ["anthropic", "openrouter", "onnx"],
    "providers": {"anthropic": {}, "openrouter": {}, "onnx": {"models": {"default": "phi-3-mini-4k-cpu"}}},
    "routing": {"mode": "rule-based", "rules": [
        {"condition": {"privacy": "high"}, "action": {"provider": "onnx"}},
        {"condition": {"complexity": "low"}, "action": {"provider": "onnx"}},
        {"condition": {"complexity": "high"}, "action": {"provider": "anthropic"}},
    ]},
}
SEED_PHASE5 = {
    "providers": {"onnx": {
        "models": {"default": "phi-3-mini-4k-cpu", "fast": "phi-3-mini-4k-cpu",
                   "advanced": "phi-3-medium-128k-cpu", "gpu": "phi-3-mini-4k-gpu"},
        "executionProviders": ["cuda", "dml", "cpu"], "graphOptimizationLevel": "all",
        "enableMemoryOptimization": True, "threads": 4, "timeout": 60000}},
    "routing": {"rules": [
        {"condition": {"privacy": "high", "localOnly": True},
         "action": {"provider": "onnx", "model": "phi-3-mini-4k-cpu"},
         "reason": "Privacy-sensitive tasks use local ONNX models"},
        {"condition": {"agentType": ["researcher"], "complexity": "low"},
         "action": {"provider": "onnx", "model": "phi-3-mini-4k-cpu"},
         "reason": "Simple tasks use free local inference"}]},
}
SEED_GPU = {"version": "1.0", "defaultProvider": "onnx", "providers": {"onnx": {
    "models": {"default": "phi-3-mini-4k-gpu"}, "executionProviders": ["cuda", "cpu"],
    "cudaOptions": {"deviceId": 0, "gpuMemLimit": 4294967296,
                    "arenExtendStrategy": "kSameAsRequested"}}}}


@pytest.mark.parametrize("seed", [SEED_HYBRID, SEED_PHASE5, SEED_GPU])
def test_the_seed_configs_validate(seed):
    parse_config(seed)


def test_lookup_order(tmp_path, monkeypatch, hermetic_env):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert find_config() is None
    home_file = write_config(hermetic_env, {}, "config.json")
    assert find_config() == home_file
    local_file = write_config(work, {}, "agentic-flow.json")
    assert find_config() == local_file
    env_file = write_config(tmp_path, {}, "env.json")
    monkeypatch.setenv("AGENTIC_FLOW_CONFIG", str(env_file))
    assert find_config() == env_file
    flag_file = write_config(tmp_path, {}, "flag.json")
    assert find_config(flag_file) == flag_file


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="from --config"):
        find_config(tmp_path / "missing.json")
    monkeypatch.setenv("AGENTIC_FLOW_CONFIG", str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match=r"gone.json.*\$AGENTIC_FLOW_CONFIG"):
        find_config()


def test_variable_substitution(monkeypatch):
    monkeypatch.setenv("VLLM_HOST", "127.0.0.1:8000")
    monkeypatch.setenv("MY_CLAUDE_KEY", ANTHROPIC_KEY)
    loaded = parse_config({"providers": {
        "vllm": {"type": "openai", "baseUrl": "http://${VLLM_HOST}/v1",
                 "models": {"default": "${VLLM_MODEL:-qwen2.5-7b}"}},
        "anthropic": {"apiKey": "${MY_CLAUDE_KEY}"}}})
    vllm = loaded.config.entry("vllm")
    assert vllm.base_url == "http://127.0.0.1:8000/v1" and vllm.models["default"] == "qwen2.5-7b"
    assert loaded.api_key("anthropic") == ANTHROPIC_KEY
    assert loaded.key_env_vars["anthropic"] == "MY_CLAUDE_KEY"


def test_an_unset_variable_outside_api_keys_names_the_path_and_the_variable():
    with pytest.raises(ConfigError) as caught:
        parse_config({"providers": {"vllm": {"type": "openai", "baseUrl": "${NO_SUCH_URL_VAR}"}}})
    assert "providers.vllm.baseUrl" in caught.value.message
    assert "${NO_SUCH_URL_VAR} is not set" in caught.value.message


def test_an_unset_key_variable_is_reported_when_the_key_is_needed():
    loaded = parse_config({"providers": {"anthropic": {"apiKey": "${MY_UNSET_CLAUDE_KEY}"}}})
    assert loaded.api_key("anthropic") is None
    assert loaded.key_env_vars["anthropic"] == "MY_UNSET_CLAUDE_KEY"


@pytest.mark.parametrize(("data", "path", "expected"), [
    ({"routing": {"rules": [{"condition": {"privacy": "max"}, "action": {}}]}},
     "routing.rules[0].condition.privacy", "'high' or 'normal'"),
    ({"routing": {"mode": "cheapest"}}, "routing.mode", "'rule-based'"),
    ({"providers": {"anthropic": {"timeout": "soon"}}}, "providers.anthropic.timeout",
     "valid integer"),
    ({"providers": {"anthropic": {"maxRetries": 99}}}, "providers.anthropic.maxRetries",
     "less than or equal to 10"),
    ({"providers": {"onnx": {"modle": "x"}}}, "providers.onnx.modle", "unknown key"),
    ({"fallbackChain": ["onnx", "gemini"]}, "fallbackChain[1]", "a configured provider"),
    ({"routing": {"rules": [{"condition": {}, "action": {"provider": "claude"}}]}},
     "routing.rules[0].action.provider", "a configured provider"),
    ({"providers": {"vllm": {"type": "openai"}}}, "providers.vllm.baseUrl", "needs baseUrl"),
    ({"providers": {"box": {"baseUrl": "http://10.0.0.5/v1"}}}, "providers.box.type",
     "expected one of"),
    ({"providers": {"vllm": {"type": "openai", "local": True,
                             "baseUrl": "http://10.0.0.5:8000/v1"}}},
     "providers.vllm.local", "loopback"),
    ({"providers": {"anthropic": {"local": True}}}, "providers.anthropic.local",
     "only openai-compatible"),
])
def test_invalid_configs_name_the_file_the_json_path_and_the_expectation(tmp_path, data, path,
                                                                         expected):
    config = write_config(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = caught.value.message
    assert str(config) in message and path in message and expected in message
    assert caught.value.exit_code == ExitCode.USAGE_ERROR


def test_invalid_json_gives_line_and_column(tmp_path):
    config = write_config(tmp_path, '{\n  "version": "1.0",\n}\n')
    with pytest.raises(ConfigError, match=r"not valid JSON at line 3 column 1"):
        load_config(config)


def test_defaults_without_a_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    assert load_config().config.provider_names() == ["onnx"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    loaded = load_config()
    assert loaded.path is None and loaded.config.provider_names() == ["onnx", "anthropic"]
    assert loaded.api_key("anthropic") == ANTHROPIC_KEY


def test_redacted_view_never_holds_a_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    loaded = parse_config({"providers": {"anthropic": {"apiKey": "${ANTHROPIC_API_KEY}"},
                                         "openrouter": {"apiKey": "sk-or-literal-in-file-123456"}}})
    text = json.dumps(redacted(loaded))
    assert ANTHROPIC_KEY not in text and "sk-or-literal-in-file-123456" not in text
    assert '"apiKey": "${ANTHROPIC_API_KEY}"' in text and '"apiKey": "***"' in text


def test_config_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    good = write_config(tmp_path, SEED_HYBRID, "good.json")
    bad = write_config(tmp_path, {"routing": {"mode": "cheapest"}}, "bad.json")

    path = run_cli("config", "path", "--config", str(good))
    assert path.returncode == 0 and path.stdout.strip() == str(good)

    show = run_cli("config", "show", "--config", str(good), "--json")
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["path"] == str(good) and shown["config"]["defaultProvider"] == "anthropic"
    assert ANTHROPIC_KEY not in show.stdout + show.stderr

    valid = run_cli("config", "validate", str(good))
    assert valid.returncode == 0 and f"OK: {good}" in valid.stdout
    assert "openrouter: no API key (OPENROUTER_API_KEY" in valid.stderr

    invalid = run_cli("--config", str(bad), "config", "validate")
    assert invalid.returncode == ExitCode.USAGE_ERROR
    assert str(bad) in invalid.stderr and "routing.mode" in invalid.stderr
    assert "Traceback" not in invalid.stderr
