"""agentic-flow users drop their router.config.json in: it is found where agentic-flow looks,
its documented keys never fail a run, the ones we can honour are honoured, the rest are named
in one warning; `config init` writes a starter; a provider skipped for want of a key says so.

Every run goes through the CLI (in process; the first through the real console script) against
the tiny fixture model and loopback fakes; nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.config_lookup import load_config
from agentic_onnx.router.execute import route_and_stream
from agentic_onnx.router.rules import RouteFlags

from .conftest import run_cli, run_cli_process
from .fake_cloud import FakeOpenAI
from .router_support import FAST_RETRY, TINY, write_config

NO_KEYS = {"ANTHROPIC_API_KEY": "", "OPENROUTER_API_KEY": "", "OPENAI_API_KEY": "",
           "GEMINI_API_KEY": "", "GOOGLE_GEMINI_API_KEY": "", "OPENAI_ORG_ID": "",
           "AGENTIC_FLOW_CONFIG": "", "AGENTIC_FLOW_ROUTER_CONFIG": ""}
UNUSED_LINE = "Warning: Accepted from agentic-flow's config and not used yet:"


def agentic_flow_config(max_tokens: int = 5) -> dict[str, Any]:
    """agentic-flow's documented router.config.json (its configuration reference), every key,
    with the onnx entry pointed at the tiny fixture model."""
    return {
        "version": "1.0",
        "defaultProvider": "onnx",
        "fallbackChain": ["onnx", "anthropic", "openai", "ollama"],
        "providers": {
            "anthropic": {
                "apiKey": "${ANTHROPIC_API_KEY}", "baseUrl": "${ANTHROPIC_BASE_URL:-}",
                "models": {"default": "claude-3-5-sonnet-20241022",
                           "fast": "claude-3-5-haiku-20241022"},
                "timeout": 120000, "maxRetries": 3, "retryDelay": 1000,
                "rateLimit": {"requestsPerMinute": 50, "tokensPerMinute": 100000}},
            "openai": {
                "apiKey": "${OPENAI_API_KEY}", "organization": "${OPENAI_ORG_ID}",
                "baseUrl": "https://api.openai.com/v1",
                "models": {"default": "gpt-4-turbo-preview", "fast": "gpt-3.5-turbo"},
                "timeout": 120000, "maxRetries": 3},
            "openrouter": {
                "apiKey": "${OPENROUTER_API_KEY}", "baseUrl": "https://openrouter.ai/api/v1",
                "models": {"default": "anthropic/claude-3.5-sonnet"},
                "preferences": {"requireParameters": True, "dataCollection": "deny",
                                "order": ["anthropic", "openai", "google"]}},
            "ollama": {
                "baseUrl": "http://localhost:11434",
                "models": {"default": "llama3:8b", "fast": "phi3:mini"},
                "gpuLayers": 35, "contextWindow": 8192, "numPredict": 2048},
            "gemini": {"apiKey": "${GOOGLE_GEMINI_API_KEY}",
                       "models": {"default": "gemini-2.0-flash-exp"}},
            "onnx": {"modelPath": str(TINY / "model.onnx"), "executionProviders": ["cuda", "cpu"],
                     "maxTokens": max_tokens, "temperature": 0.0, "localInference": True},
        },
        "routing": {
            "mode": "rule-based",
            "rules": [
                {"condition": {"agentType": ["researcher", "planner"], "complexity": "low"},
                 "action": {"provider": "openai", "model": "gpt-3.5-turbo"},
                 "reason": "Simple tasks use cheaper models"},
                {"condition": {"agentType": ["coder", "reviewer"], "requiresTools": True},
                 "action": {"provider": "anthropic", "model": "claude-3-5-sonnet-20241022"},
                 "reason": "Tool calling tasks need Claude"},
                {"condition": {"privacy": "high", "localOnly": True},
                 "action": {"provider": "ollama", "model": "llama3:70b"},
                 "reason": "Privacy-sensitive tasks use local models"}],
            "costOptimization": {"enabled": True, "maxCostPerRequest": 0.5,
                                 "budgetAlerts": {"daily": 10.0, "monthly": 250.0},
                                 "preferCheaper": True, "costThreshold": 0.1},
            "performance": {"timeout": 120000, "concurrentRequests": 5,
                            "circuitBreaker": {"enabled": True, "threshold": 5}},
        },
        "toolCalling": {"translationEnabled": True, "defaultFormat": "anthropic",
                        "formatMapping": {"openai": "openai-functions", "ollama": "manual"},
                        "fallbackStrategy": "disable-tools"},
        "monitoring": {"enabled": True, "logLevel": "info",
                       "metrics": {"trackCost": True, "trackLatency": True},
                       "alerts": {"costThreshold": 5.0, "errorRate": 0.1}},
        "cache": {"enabled": True, "ttl": 3600, "maxSize": 1000, "strategy": "lru"},
    }


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning:")]


def test_agentic_flows_router_config_runs_locally_and_names_the_unused_keys_once(hermetic_env):
    write_config(hermetic_env, agentic_flow_config(max_tokens=5), "router.config.json")
    result = run_cli_process("--task", "Say hello.", "--json", env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["provider"] == "onnx"
    assert answer["model"] == TINY.name  # modelPath (a .onnx file) -> its folder
    assert answer["usage"]["completion_tokens"] == 5  # the entry's maxTokens, no --max-tokens
    assert answer["execution_provider"] == "cpu"  # ["cuda", "cpu"]: the first available
    assert warning_lines(result.stderr) == [
        f"{UNUSED_LINE} gpuLayers, contextWindow, localInference, "
        "routing.costOptimization.preferCheaper, routing.costOptimization.costThreshold, "
        "routing.performance.timeout, routing.performance.concurrentRequests, toolCalling, "
        "monitoring (see docs/router.md)."]
    # acted on: `cache` (router/response_cache.py), costOptimization's maxCostPerRequest and
    # budgetAlerts (router/spend_limits.py), rateLimit (router/rate_limits.py),
    # performance.circuitBreaker (router/deployments.py)


def test_a_flag_wins_over_the_entrys_max_tokens(hermetic_env):
    write_config(hermetic_env, agentic_flow_config(max_tokens=5), "router.config.json")
    result = run_cli("--task", "Say hello.", "--json", "--max-tokens", "3", env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["completion_tokens"] == 3


def test_agentic_flow_router_config_variable_is_read(tmp_path):
    path = write_config(tmp_path, agentic_flow_config(max_tokens=4), "custom-router.json")
    result = run_cli("--task", "Say hello.", "--json",
                     env={**NO_KEYS, "AGENTIC_FLOW_ROUTER_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["completion_tokens"] == 4
    shown = json.loads(run_cli("config", "path", "--json",
                               env={**NO_KEYS, "AGENTIC_FLOW_ROUTER_CONFIG": str(path)}).stdout)
    assert shown["path"] == str(path)


def test_our_own_names_come_before_agentic_flows(tmp_path, hermetic_env, monkeypatch):
    for name in NO_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    router_file = write_config(hermetic_env, {"defaultProvider": "onnx"}, "router.config.json")
    assert load_config().path == router_file
    own = write_config(hermetic_env, {"defaultProvider": "onnx"}, "config.json")
    assert load_config().path == own
    variable_file = write_config(tmp_path, {}, "named.json")
    monkeypatch.setenv("AGENTIC_FLOW_ROUTER_CONFIG", str(variable_file))
    assert load_config().path == own  # config.json still first
    own.unlink()
    assert load_config().path == variable_file  # then the variable, then router.config.json
    monkeypatch.setenv("AGENTIC_FLOW_ROUTER_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(Exception, match="AGENTIC_FLOW_ROUTER_CONFIG"):
        load_config()


def test_an_untrusted_project_router_config_is_ignored_with_the_trust_warning(tmp_path):
    project = tmp_path / "repo"
    project.mkdir()
    hostile = {"defaultProvider": "onnx", "providers": {"onnx": {"maxTokens": 2}}}
    write_config(project, hostile, "router.config.json")
    env = {**NO_KEYS, "AGENTIC_FLOW_CONFIG": ""}
    command = ["--model", str(TINY), "--task", "Say hello.", "--json"]
    result = _run_in(project, command, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["completion_tokens"] > 2  # its maxTokens unread
    assert warning_lines(result.stderr) == [
        f"Warning: Ignoring the project config {project / 'router.config.json'}: it is read only "
        f"once you trust it. Review it, then run `agentic-onnx config trust` in {project}."]
    assert _run_in(project, ["config", "trust"], env).returncode == 0
    trusted = _run_in(project, command, env)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["usage"]["completion_tokens"] == 2
    assert warning_lines(trusted.stderr) == []


def _run_in(directory: Path, args: list[str], env: dict[str, str]):
    previous = Path.cwd()
    os.chdir(directory)
    try:
        return run_cli(*args, env=env)
    finally:
        os.chdir(previous)


def test_a_project_cannot_make_ollama_local_or_point_it_elsewhere(tmp_path, monkeypatch):
    """The user's own ollama entry is local; a trusted project file that moves it to another
    server loses that (and a project-only ollama entry is never local)."""
    from agentic_onnx.router.trust import trust_project_file

    user = write_config(tmp_path, {"providers": {"ollama": {}}}, "config.json")
    monkeypatch.setenv("AGENTIC_FLOW_CONFIG", str(user))
    monkeypatch.chdir(tmp_path)
    assert load_config().config.entry("ollama").local
    elsewhere = {"providers": {"ollama": {"baseUrl": "http://127.0.0.1:9/v1"}}}
    project = write_config(tmp_path, elsewhere, "router.config.json")
    trust_project_file(project)
    moved = load_config()
    assert moved.project_path == project and not moved.config.entry("ollama").local
    user.write_text(json.dumps({"providers": {}}), encoding="utf-8")
    project.write_text(json.dumps({"providers": {"ollama": {}}}), encoding="utf-8")
    trust_project_file(project)
    only_project = load_config()
    assert only_project.config.entry("ollama").base_url == "http://localhost:11434/v1"
    assert not only_project.config.entry("ollama").local


def test_ollama_is_local_so_a_private_request_may_go_to_it(tmp_path):
    """agentic-flow's ollama entry (its bare `http://host:11434` form) is an OpenAI-compatible
    server on this machine: local, so the privacy rule's choice of it stands."""
    fake = FakeOpenAI().start()
    try:
        config = agentic_flow_config()
        config["providers"]["ollama"]["baseUrl"] = f"http://127.0.0.1:{fake.port}"
        path = write_config(tmp_path, config, "router.config.json")
        result = run_cli("--config", str(path), "--task", "Secret.", "--privacy", "high",
                         "--local-only", "--json", env=NO_KEYS)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["provider"] == "ollama" and answer["route"]["rule"] == "routing.rules[2]"
        assert fake.count == 1
        body = fake.requests[0]["body"]
        assert fake.requests[0]["path"] == "/v1/chat/completions"
        assert body["model"] == "llama3:70b" and body["max_tokens"] == 2048  # numPredict
    finally:
        fake.stop()


def test_organization_preferences_temperature_and_gemini_reach_the_wire(tmp_path, monkeypatch):
    openai = FakeOpenAI().start()
    router = FakeOpenAI(openrouter=True).start()
    try:
        monkeypatch.setenv("OPENAI_ORG_ID", "org-1234")
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-key-0123456789")
        config = agentic_flow_config()
        config["providers"]["openai"]["baseUrl"] = openai.base_url
        config["providers"]["openai"]["temperature"] = 0.3
        config["providers"]["openrouter"]["baseUrl"] = router.base_url
        path = write_config(tmp_path, config, "router.config.json")
        for provider in ("openai", "openrouter"):
            routed = route_and_stream(ChatRequest.of([{"role": "user", "content": "Hi"}]),
                                      RouteFlags(provider=provider), config_path=str(path))
            routed.response.consume()
        sent = openai.requests[0]
        assert sent["headers"]["openai-organization"] == "org-1234"
        assert sent["body"]["temperature"] == 0.3 and sent["body"]["max_tokens"] == 512
        assert router.requests[0]["body"]["provider"] == {
            "require_parameters": True, "data_collection": "deny",
            "order": ["anthropic", "openai", "google"]}
        gemini = load_config(str(path))
        entry = gemini.config.entry("gemini")
        assert entry.base_url == "https://generativelanguage.googleapis.com/v1beta/openai/"
        assert not entry.local and gemini.key_env_vars["gemini"] == "GOOGLE_GEMINI_API_KEY"
    finally:
        openai.stop()
        router.stop()


def test_gemini_without_a_key_names_gemini_api_key(tmp_path):
    path = write_config(tmp_path, {"providers": {"gemini": {}}}, "router.config.json")
    result = run_cli("--config", str(path), "--provider", "gemini", "--task", "Hi", env=NO_KEYS)
    assert result.returncode == 4
    assert "GEMINI_API_KEY is not set" in result.stderr
    assert "Skipped" not in result.stderr  # asked for by name: the error itself


def test_a_typo_in_our_own_keys_still_fails_with_its_json_path(tmp_path):
    config = agentic_flow_config()
    config["providers"]["onnx"]["maxTokenz"] = 5
    path = write_config(tmp_path, config, "router.config.json")
    result = run_cli("config", "validate", str(path), env=NO_KEYS)
    assert result.returncode == 2
    assert "at providers.onnx.maxTokenz: unknown key" in result.stderr
    config = agentic_flow_config()
    config["routing"]["costOptimisation"] = {}
    path = write_config(tmp_path, config, "router.config.json")
    assert "at routing.costOptimisation: unknown key" in run_cli(
        "config", "validate", str(path), env=NO_KEYS).stderr


def test_retry_delay_is_the_base_backoff(tmp_path):
    fake = FakeOpenAI().start()
    try:
        fake.script(*[_status(503)] * 2)
        config = {"providers": {"box": {"type": "openai", "baseUrl": fake.base_url,
                                        "retryDelay": 40, "maxRetries": 2}},
                  "defaultProvider": "box", "retry": {**FAST_RETRY, "maxDelayMs": 1000}}
        path = write_config(tmp_path, config)
        waits: list[float] = []
        routed = route_and_stream(ChatRequest.of([{"role": "user", "content": "Hi"}]), RouteFlags(),
                                  config_path=str(path), sleep=waits.append)
        routed.response.consume()
        assert 0.04 <= waits[0] <= 0.06 and 0.08 <= waits[1] <= 0.12  # 40 ms * 2^n + jitter
    finally:
        fake.stop()


def _status(code: int):
    from .fake_cloud import status

    return status(code)


# ---------------------------------------------------------------------------------------------
# config init


def test_config_init_writes_a_private_valid_local_starter_and_refuses_to_overwrite(hermetic_env):
    result = run_cli("config", "init", "--json", env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    path = hermetic_env / "config.json"
    assert json.loads(result.stdout) == {"path": str(path), "written": True, "hybrid": False,
                                         "backup": None}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["defaultProvider"] == "onnx" and data["fallbackChain"] == []
    assert run_cli("config", "validate", env=NO_KEYS).returncode == 0
    before = path.read_bytes()
    again = run_cli("config", "init", env=NO_KEYS)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert path.read_bytes() == before


def test_config_init_hybrid_routes_harder_work_to_claude_and_keeps_a_backup(hermetic_env):
    assert run_cli("config", "init", env=NO_KEYS).returncode == 0
    result = run_cli("config", "init", "--hybrid", "--force", "--json", env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    backup = Path(written["backup"])
    assert backup == hermetic_env / "config.json.bak" and json.loads(backup.read_text())
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    text = (hermetic_env / "config.json").read_text(encoding="utf-8")
    assert "${ANTHROPIC_API_KEY}" in text and "sk-" not in text
    assert run_cli("config", "validate", env=NO_KEYS).returncode == 0
    explained = json.loads(run_cli("router", "explain", "--task", "Design a rate limiter",
                                   "--json", env=NO_KEYS).stdout)
    assert explained["provider"] == "anthropic"
    assert [c["provider"] for c in explained["candidates"]] == ["anthropic", "openrouter", "onnx"]
    private = json.loads(run_cli("router", "explain", "--task", "Design a rate limiter",
                                 "--privacy", "high", "--json", env=NO_KEYS).stdout)
    assert private["provider"] == "onnx"


# ---------------------------------------------------------------------------------------------
# A provider skipped for want of a key


@pytest.mark.parametrize("json_mode", [False, True])
def test_each_provider_skipped_for_a_missing_key_is_one_line(tmp_path, json_mode):
    config = {"defaultProvider": "anthropic", "fallbackChain": ["anthropic", "openrouter", "onnx"],
              "providers": {"anthropic": {}, "openrouter": {},
                            "onnx": {"models": {"default": str(TINY)}}},
              "retry": FAST_RETRY}
    path = write_config(tmp_path, config)
    args = ["--config", str(path), "--task", "Say hello.", "--max-tokens", "3"]
    result = run_cli(*args, *(["--json"] if json_mode else []), env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    assert warning_lines(result.stderr) == [
        "Warning: Skipped anthropic: ANTHROPIC_API_KEY is not set.",
        "Warning: Skipped openrouter: OPENROUTER_API_KEY is not set."]
    if json_mode:
        attempts = json.loads(result.stdout)["attempts"]
        assert [(a["provider"], a["outcome"]) for a in attempts] == [
            ("anthropic", "failed"), ("openrouter", "failed"), ("onnx", "ok")]
