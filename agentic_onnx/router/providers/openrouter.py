"""OpenRouter: the OpenAI chat-completions wire format with its own habits.

It sends `: OPENROUTER PROCESSING` comment lines while a request waits (the SSE parser drops
comments), reports usage (and the real cost, with `usage.include`) in the last chunk, may put an
error object inside a 200 stream, and wants attribution headers (HTTP-Referer, X-Title), which
the config's `headers` may override. 402 (out of credits) is not retried.
"""

from __future__ import annotations

import re
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.router.deployments import Endpoint
from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider

ATTRIBUTION_HEADERS = {"HTTP-Referer": "https://pypi.org/project/agentic-onnx/",
                       "X-Title": "agentic-onnx"}


class OpenRouterProvider(OpenAICompatProvider):
    kind = "openrouter"
    can_be_marked_local = False
    needs_key = True
    key_env_var = "OPENROUTER_API_KEY"
    default_base_url = "https://openrouter.ai/api/v1"
    needs_base_url = False
    default_models = {"default": "anthropic/claude-sonnet-4.5",
                      "fast": "meta-llama/llama-3.1-8b-instruct",
                      "advanced": "anthropic/claude-opus-4.1"}
    entry_keys = frozenset({"preferences"})
    label = "OpenRouter"

    def __init__(self, name: str, base_url: str, api_key: str | None, key_env_var: str,
                 timeout_s: float, headers: dict[str, str] | None = None,
                 preferences: dict[str, Any] | None = None) -> None:
        super().__init__(name, [Endpoint(name, base_url.rstrip("/"), api_key,
                                         {**ATTRIBUTION_HEADERS, **(headers or {})})],
                         key_env_var, timeout_s)
        self._preferences = preferences  # OpenRouter's `provider` routing object

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any,
                    **local_settings: Any) -> OpenRouterProvider:
        return cls(name, entry.urls(cls.kind)[0], loaded.api_key(name),
                   cls.key_env_var_for(loaded, name) or "OPENROUTER_API_KEY",
                   entry.timeout / 1000, entry.headers,
                   preferences=openrouter_preferences(entry.preferences))

    def _payload(self, request: ChatRequest, endpoint: Endpoint) -> dict[str, Any]:
        payload = {**super()._payload(request, endpoint), "usage": {"include": True}}
        if self._preferences:
            payload["provider"] = dict(self._preferences)
        return payload


def openrouter_preferences(preferences: dict[str, Any] | None) -> dict[str, Any] | None:
    """agentic-flow's openrouter `preferences` as OpenRouter's `provider` request field
    (`dataCollection` -> `data_collection`, `requireParameters` -> `require_parameters`)."""
    if not preferences:
        return None
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value
            for key, value in preferences.items()}
