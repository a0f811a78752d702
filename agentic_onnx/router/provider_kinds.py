"""Facts about the provider kinds that config, presets and providers all need: the kinds, their
key variables, default URLs and models, and what counts as a loopback URL. No imports of our
own, so every router module may use it without an import circle."""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

PROVIDER_TYPES = ("onnx", "anthropic", "openrouter", "openai")
KEY_ENV_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
DEFAULT_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "openrouter": "https://openrouter.ai/api/v1",
}
DEFAULT_MODELS = {
    "onnx": {},
    "anthropic": {"default": "claude-sonnet-4-5", "fast": "claude-haiku-4-5",
                  "advanced": "claude-opus-4-1"},
    "openrouter": {"default": "anthropic/claude-sonnet-4.5",
                   "fast": "meta-llama/llama-3.1-8b-instruct",
                   "advanced": "anthropic/claude-opus-4.1"},
    "openai": {},
}


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or `localhost`."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
