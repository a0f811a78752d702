"""Providers behind one contract (base.py), built from config entries by `build_provider`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agentic_onnx.router.config import LoadedConfig
from agentic_onnx.router.provider_kinds import KEY_ENV_VARS
from agentic_onnx.router.config_compat import named_provider
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

        if execution_provider == "auto" and entry.execution_providers:
            execution_provider = first_available_ep(entry.execution_providers)
        return OnnxProvider(name, execution_provider, threads or entry.threads, resolve)
    if kind == "anthropic":
        from agentic_onnx.router.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, entry.urls(kind)[0], loaded.api_key(name),
                                 key_env_var or "ANTHROPIC_API_KEY", timeout_s, entry.headers)
    if kind == "openrouter":
        from agentic_onnx.router.providers.openrouter import OpenRouterProvider

        return OpenRouterProvider(name, entry.urls(kind)[0], loaded.api_key(name),
                                  key_env_var or "OPENROUTER_API_KEY", timeout_s, entry.headers,
                                  preferences=openrouter_preferences(entry.preferences))
    from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider

    headers = dict(entry.headers)
    if entry.organization:  # agentic-flow's `organization`; an explicit header wins
        headers.setdefault("OpenAI-Organization", entry.organization)
    provider = OpenAICompatProvider(name, entry.urls(kind), loaded.api_key(name), key_env_var,
                                    timeout_s, local=entry.local, headers=headers)
    named = named_provider(name, entry)
    if named is not None and named.key_env_var:
        provider.needs_key = True  # gemini: a missing key fails before anything is sent
    return provider


def first_available_ep(names: list[str]) -> str:
    """The seed's `executionProviders` in the user's order: the first this install can use.
    Names we do not know (coreml, wasm) are passed over; none known: `auto`. When none of the
    known ones is available, the first is asked for, so its error says what to install."""
    from agentic_onnx.core.machine.execution_provider import EP_PREFERENCE, available_execution_providers

    aliases = {"directml": "dml", "cuda": "cuda", "dml": "dml", "webgpu": "webgpu", "cpu": "cpu"}
    known = [aliases[name.lower()] for name in names if name.lower() in aliases]
    known = [name for name in dict.fromkeys(known) if name in EP_PREFERENCE]
    if not known:
        return "auto"
    if len(known) == 1:
        return known[0]
    available = available_execution_providers(known)
    return next((name for name in known if name in available), known[0])


def openrouter_preferences(preferences: dict[str, Any] | None) -> dict[str, Any] | None:
    """agentic-flow's openrouter `preferences` as OpenRouter's `provider` request field
    (`dataCollection` -> `data_collection`, `requireParameters` -> `require_parameters`)."""
    if not preferences:
        return None
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value
            for key, value in preferences.items()}
