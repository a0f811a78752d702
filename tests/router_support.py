"""Shared pieces of the router tests: the loopback fakes as fixtures, config builders, keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.execute import RoutedRun, route_and_stream
from agentic_onnx.router.rules import RouteFlags

from .conftest import MODELS
from .fake_cloud import FakeAnthropic, FakeOpenAI

TINY = MODELS / "tiny-phi3-fp32"
ANTHROPIC_KEY = "sk-ant-test-SECRET-0123456789abcdef"
OPENROUTER_KEY = "sk-or-test-SECRET-fedcba9876543210"
# Millisecond-scale backoff keeps the suite fast; the bounds are still exercised.
FAST_RETRY = {"baseDelayMs": 1, "maxDelayMs": 4, "maxRetryAfterMs": 300}


def running(fake: Any, expected_key: str | None = None) -> Iterator[Any]:
    """A fixture's body: start a loopback fake (insisting on `expected_key`), stop it after."""
    fake.expected_key = expected_key
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def anthropic_fake() -> Iterator[FakeAnthropic]:
    yield from running(FakeAnthropic(), ANTHROPIC_KEY)


@pytest.fixture
def openrouter_fake() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI(openrouter=True), OPENROUTER_KEY)


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI())


@pytest.fixture
def cloud_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_KEY)


def hybrid_config(anthropic: FakeAnthropic | None = None, openrouter: FakeOpenAI | None = None,
                  **overrides: Any) -> dict[str, Any]:
    """The seed's hybrid config, pointed at the fakes, with a tiny local model and fast retries."""
    providers: dict[str, Any] = {"onnx": {"models": {"default": str(TINY)}}}
    if anthropic is not None:
        providers["anthropic"] = {"apiKey": "${ANTHROPIC_API_KEY}", "baseUrl": anthropic.base_url,
                                  "timeout": 2000, "maxRetries": 2}
    if openrouter is not None:
        providers["openrouter"] = {"apiKey": "${OPENROUTER_API_KEY}",
                                   "baseUrl": openrouter.base_url, "timeout": 2000,
                                   "maxRetries": 2}
    chain = [name for name in ("anthropic", "openrouter", "onnx") if name in providers]
    config: dict[str, Any] = {"version": "1.0", "defaultProvider": chain[0],
                              "fallbackChain": chain, "providers": providers,
                              "routing": {"mode": "rule-based", "rules": []},
                              "retry": dict(FAST_RETRY)}
    config.update(overrides)
    return config


def write_config(directory: Path, data: dict[str, Any] | str, name: str = "router.json") -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2),
                    encoding="utf-8")
    return path


def route(config_path: Path | None, task: str = "Say hello.", sleep: Any = None,
          notices: list[str] | None = None, max_tokens: int = 8, **flags: Any) -> RoutedRun:
    """route_and_stream with a user task, run to the end; raises what the router raises."""
    extra = {"sleep": sleep} if sleep is not None else {}
    request = ChatRequest.of([{"role": "user", "content": task}],
                             options=build_options(max_tokens=max_tokens))
    routed = route_and_stream(
        request, RouteFlags(**flags), config_path=str(config_path) if config_path else None,
        threads=1, on_notice=(notices.append if notices is not None else None), **extra)
    if routed.response is not None:
        routed.response.consume()
    return routed
