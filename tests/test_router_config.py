"""The router config: lookup order, ${VAR} substitution, validation errors, defaults, commands,
hostile files, and `config show` masking every secret-bearing value."""

from __future__ import annotations

import json

import pytest

from agentic_onnx.core.errors import ExitCode
from agentic_onnx.router.config import parse_config
from agentic_onnx.router.config_lookup import load_config
from agentic_onnx.router.config_lookup import find_config
from agentic_onnx.router.config_view import redacted
from agentic_onnx.router.errors import ConfigError
from agentic_onnx.router.usage import usage_db_path

from .conftest import run_cli, run_cli_process
from .fake_cloud import FakeOpenAI, status
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
    write_config(work, {}, "agentic-flow.json")
    assert find_config() == home_file  # a project file is layered on top, never instead
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

    invalid = run_cli_process("--config", str(bad), "config", "validate")  # the real script
    assert invalid.returncode == ExitCode.USAGE_ERROR
    assert str(bad) in invalid.stderr and "routing.mode" in invalid.stderr
    assert "Traceback" not in invalid.stderr


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"version": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 16)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"providers": {"onnx": {"cudaOptions": ' + b"[" * 200 + b"]" * 200 + b"}}}",
     "nested more than 64 levels deep"),
    (b'{"retry": {"baseDelayMs": ' + b"9" * 5000 + b"}}", "too many digits"),
    (b'{"retry": {"baseDelayMs": ' + b"9" * 4000 + b"}}", "retry.baseDelayMs"),
    (b'{"providers": {"x": {"type": "openai", "baseUrl": "http://127.0.0.1/v1", '
     b'"prices": {"m": {"input": 1e999, "output": 1}}}}}', "finite number"),
    (b'{"retry": {"baseDelayMs": NaN}}', "NaN is not a number"),
], ids=["latin-1", "nested-100000", "nested-200", "5000-digits", "4000-digits", "1e999", "NaN"])
def test_hostile_config_files_exit_2_with_one_line(tmp_path, content, expected):
    config = tmp_path / "hostile.json"
    config.write_bytes(content)
    result = run_cli("config", "validate", str(config))
    assert result.returncode == ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(config) in line and expected in line and len(line) < 400


def test_config_show_masks_every_secret_bearing_value(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("PROXY_PASSWORD", "proxy-pass-from-env-42")
    monkeypatch.setenv("TEAM_HEADER_TOKEN", "team-header-token-777")
    config = write_config(tmp_path, {"providers": {
        "anthropic": {"apiKey": "${ANTHROPIC_API_KEY}",
                      "headers": {"x-team": "${TEAM_HEADER_TOKEN}",
                                  "x-literal": "literal-header-secret-1"}},
        "openrouter": {"apiKey": "sk-or-literal-in-file-123456"},
        "proxy": {"type": "openai", "apiKey": "plain-literal-key-9876",
                  "baseUrls": ["https://alice:${PROXY_PASSWORD}@proxy.example/v1",
                               "https://proxy.example/v1?api_key=query-secret-555&region=eu"]}}})
    secrets = ["proxy-pass-from-env-42", "team-header-token-777", "literal-header-secret-1",
               "sk-or-literal-in-file-123456", "plain-literal-key-9876", "query-secret-555",
               ANTHROPIC_KEY, "alice"]
    for extra in ([], ["--json"]):
        result = run_cli("config", "show", "--config", str(config), *extra)
        assert result.returncode == 0, result.stderr
        leaked = [secret for secret in secrets if secret in result.stdout + result.stderr]
        assert leaked == []
    shown = json.loads(result.stdout)["config"]["providers"]
    assert shown["anthropic"]["apiKey"] == "${ANTHROPIC_API_KEY}"
    assert shown["anthropic"]["headers"] == {"x-team": "***", "x-literal": "***"}
    assert shown["openrouter"]["apiKey"] == "***" and shown["proxy"]["apiKey"] == "***"
    assert shown["proxy"]["baseUrls"] == ["https://***@proxy.example/v1",
                                          "https://proxy.example/v1?api_key=***&region=***"]


def test_a_partial_key_echo_is_masked_on_stderr_and_in_the_usage_log(tmp_path):
    """A server quoting part of the key (truncated, not `sk-` shaped) is caught by the 8-run
    rule, not by the key-shape pattern."""
    key = "corp-token-0123456789abcdef"
    echo = key[5:19] + "..."  # "token-01234567..."
    fake = FakeOpenAI().start()
    try:
        fake.default = status(401, body={"error": {"message": f"invalid key {echo}",
                                                   "code": 401}})
        config = write_config(tmp_path, {"defaultProvider": "corp", "providers": {
            "corp": {"type": "openai", "baseUrl": fake.base_url, "apiKey": "${CORP_KEY}"}}})
        result = run_cli("--config", str(config), "--provider", "corp", "--task", "Hi",
                         env={"CORP_KEY": key})
    finally:
        fake.stop()
    assert fake.count == 1 and result.returncode == ExitCode.PROVIDER_ERROR
    assert "HTTP 401: invalid key ***..." in result.stderr
    database = usage_db_path().read_bytes()
    assert b"invalid key ***..." in database
    for start in range(len(key) - 7):
        assert key[start:start + 8] not in result.stdout + result.stderr
        assert key[start:start + 8].encode() not in database
