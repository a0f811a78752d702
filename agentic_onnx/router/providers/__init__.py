"""Providers behind one contract (base.py), built from config entries by `build_provider`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentic_onnx.router.config import LoadedConfig
from agentic_onnx.router.provider_kinds import provider_class
from agentic_onnx.router.providers.base import Provider

__all__ = ["Provider", "build_provider"]


def build_provider(loaded: LoadedConfig, name: str, *, execution_provider: str = "auto",
                   threads: int | None = None, device_id: int | None = None,
                   resolve: Callable[[str], Any] | None = None,
                   use_service: bool = True, private: bool = False) -> Provider:
    """The provider for config entry `name`: its kind's class builds itself from the entry.
    Builds clients lazily: no network, no key check. `use_service`: local models may be
    answered by the resident service (router/service.py) when one runs; `private`: a private
    request's provider, given only the entry's local deployments (router/deployments.py)."""
    config = loaded.config
    return provider_class(config.kind_of(name)).from_config(
        loaded, name, config.entry(name), execution_provider=execution_provider,
        threads=threads, device_id=device_id, resolve=resolve, use_service=use_service,
        private=private)
