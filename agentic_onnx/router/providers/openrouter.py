"""OpenRouter: the OpenAI chat-completions wire format with its own habits.

It sends `: OPENROUTER PROCESSING` comment lines while a request waits (the SSE parser drops
comments), reports usage (and the real cost, with `usage.include`) in the last chunk, may put an
error object inside a 200 stream, and wants attribution headers (HTTP-Referer, X-Title), which
the config's `headers` may override. 402 (out of credits) is not retried.
"""

from __future__ import annotations

from typing import Any

from agentic_onnx.router.providers.base import ProviderRequest
from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider

ATTRIBUTION_HEADERS = {"HTTP-Referer": "https://pypi.org/project/agentic-onnx/",
                       "X-Title": "agentic-onnx"}


class OpenRouterProvider(OpenAICompatProvider):
    kind = "openrouter"
    needs_key = True
    label = "OpenRouter"

    def __init__(self, name: str, base_url: str, api_key: str | None, key_env_var: str,
                 timeout_s: float, headers: dict[str, str] | None = None,
                 preferences: dict[str, Any] | None = None) -> None:
        super().__init__(name, [base_url], api_key, key_env_var, timeout_s, local=False,
                         headers={**ATTRIBUTION_HEADERS, **(headers or {})})
        self._preferences = preferences  # OpenRouter's `provider` routing object

    def _payload(self, request: ProviderRequest) -> dict[str, Any]:
        payload = {**super()._payload(request), "usage": {"include": True}}
        if self._preferences:
            payload["provider"] = dict(self._preferences)
        return payload
