"""The provider kinds: a registry of provider classes, keyed by the config's `type`.

The router decides by the flags each class carries (providers/base.py: `local`, `needs_key`,
`key_env_var`, `supports_tools`, `default_base_url`, `default_models`, ...), never by a kind's
name, so a new kind is one class plus its line here (or one `register_provider` call).

The built-in kinds are registered by dotted path and imported on first use: config, presets
and `--help` import no provider module (nor, through them, an HTTP client) until a class is
asked for. No imports of our own at run time, so every router module may use this one.
"""

from __future__ import annotations

from importlib import import_module
from collections.abc import Sequence
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from agentic_onnx.router.providers.base import Provider

# Registration order is the order kinds are listed in (errors, `--provider` suggestions).
_registered: dict[str, str | type[Provider]] = {
    "onnx": "agentic_onnx.router.providers.onnx:OnnxProvider",
    "anthropic": "agentic_onnx.router.providers.anthropic:AnthropicProvider",
    "openrouter": "agentic_onnx.router.providers.openrouter:OpenRouterProvider",
    "openai": "agentic_onnx.router.providers.openai_compat:OpenAICompatProvider",
}
# The kind of a provider that names no type and is not named after a kind (an endpoint the
# config has not described): OpenAI-compatible, which needs a baseUrl to be usable.
FALLBACK_KIND = "openai"


def register_provider(kind: str, provider: str | type[Provider]) -> None:
    """Add (or replace) a provider kind: its class, or `module:Class` to import on first use."""
    _registered[kind] = provider


def unregister_provider(kind: str) -> None:
    _registered.pop(kind, None)


def provider_kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(_registered)


def provider_class(kind: str) -> type[Provider]:
    """The class registered for `kind` (imported on first use); KeyError for an unknown kind."""
    provider = _registered[kind]
    if isinstance(provider, str):
        module, _, name = provider.partition(":")
        provider = getattr(import_module(module), name)
        if provider.kind != kind:
            raise TypeError(f"{module}:{name} says kind {provider.kind!r}, registered as {kind!r}")
        _registered[kind] = provider
    return provider


def kind_for(name: str, declared: str | None) -> str:
    """The kind of provider `name`: its declared `type`, else its name when that is a kind."""
    if declared:
        return declared
    return name if name in _registered else FALLBACK_KIND


def price_kind(kind: str) -> str:
    """The section of the price table (data/prices.json) for a kind."""
    provider = provider_class(kind)
    return provider.price_kind or provider.kind


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or `localhost`."""
    return is_loopback_host(urlsplit(url).hostname or "")


def is_trusted_url(url: str, trusted_hosts: Sequence[str] = ()) -> bool:
    """True for a loopback URL, or one whose host is in `trusted_hosts` (the config's
    `trustedHosts`: IP addresses, networks such as 10.0.0.0/8, or exact host names)."""
    try:
        host = (urlsplit(url).hostname or "").strip("[]").lower()
    except ValueError:
        return False
    if is_loopback_host(host):
        return True
    try:
        address = ip_address(host)
    except ValueError:
        address = None
    for trusted in trusted_hosts:
        trusted = trusted.strip("[]").lower()
        try:
            network = ip_network(trusted, strict=False)
        except ValueError:  # a host name: the URL must name exactly it
            if host and host == trusted.rstrip("."):
                return True
            continue
        if address is not None and address in network:
            return True
    return False


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (bracketed or not) and `localhost`."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
