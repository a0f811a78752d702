"""Providers behind one contract (base.py), built from config entries by `build_provider`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentic_onnx.router.config import KEY_ENV_VARS, LoadedConfig
from agentic_onnx.router.providers.base import Provider, ProviderRequest

__all__ = ["Provider", "ProviderRequest", "build_provider"]


def build_provider(loaded: LoadedConfig, name: str, *, execution_provider: str = "auto",
                   threads: int | None = None,
                   resolve: Callable[[str], Any] | None = None) -> Provider:
    """The provider for config entry `name`. Builds clients lazily: no network, no key check."""
    config = loaded.config
    entry, kind = config.entry(name), config.kind_of(name)
    timeout_s = entry.timeout / 1000
    key_env_var = loaded.key_env_vars.get(name) or KEY_ENV_VARS.get(kind)
    if kind == "onnx":
        from agentic_onnx.router.providers.onnx import OnnxProvider

        if execution_provider == "auto" and entry.execution_providers and \
                len(entry.execution_providers) == 1:
            execution_provider = entry.execution_providers[0]
        return OnnxProvider(name, execution_provider, threads or entry.threads, resolve)
    if kind == "anthropic":
        from agentic_onnx.router.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, entry.urls(kind)[0], loaded.api_key(name),
                                 key_env_var or "ANTHROPIC_API_KEY", timeout_s, entry.headers)
    if kind == "openrouter":
        from agentic_onnx.router.providers.openrouter import OpenRouterProvider

        return OpenRouterProvider(name, entry.urls(kind)[0], loaded.api_key(name),
                                  key_env_var or "OPENROUTER_API_KEY", timeout_s, entry.headers)
    from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(name, entry.urls(kind), loaded.api_key(name), key_env_var,
                                timeout_s, local=entry.local, headers=entry.headers)
