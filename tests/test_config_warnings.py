"""`config validate`'s warnings, decided in router/config_warnings.py: a valid config that is
probably not what was meant."""

from __future__ import annotations

from agentic_onnx.router.config import parse_config
from agentic_onnx.router.config_warnings import likely_mistakes, validation_warnings


def test_an_unset_cloud_key_and_ignored_onnxruntime_keys_are_warned_about(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-warnings-0000")
    loaded = parse_config({"providers": {
        "anthropic": {}, "openrouter": {},
        "onnx": {"models": {"default": "phi-3-mini-4k-cpu"}, "graphOptimizationLevel": "all",
                 "cudaOptions": {"deviceId": 0}}}})
    assert sorted(likely_mistakes(loaded)) == [
        "providers.onnx: graphOptimizationLevel, cudaOptions accepted for compatibility and "
        "ignored (onnxruntime-genai reads these from genai_config.json).",
        "providers.openrouter: no API key (OPENROUTER_API_KEY is not set); requests to it "
        "will fail.",
    ]


def test_a_clean_config_has_no_warnings_and_loadings_own_come_first(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-warnings-0000")
    loaded = parse_config({"providers": {"anthropic": {}, "onnx": {}}})
    assert likely_mistakes(loaded) == []
    loaded.warnings.append("a warning from loading")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert validation_warnings(loaded) == [
        "a warning from loading",
        "providers.anthropic: no API key (ANTHROPIC_API_KEY is not set); requests to it will fail."]
