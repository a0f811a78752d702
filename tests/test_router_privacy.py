"""Privacy is a hard guarantee: a private request reaches no cloud provider, under every fault.

The cloud fakes here are healthy and count requests: if a private prompt ever reached one, the
request would succeed and its counter would move. Every case asserts all counters stay zero.
"""

from __future__ import annotations

import socket

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import AgenticError, UsageError
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.errors import PrivacyError
from agentic_onnx.router.fallback import FallbackExecutor
from agentic_onnx.router.providers.anthropic import AnthropicProvider
from agentic_onnx.router.rules import Candidate

from .fake_cloud import Behaviour, FakeOpenAI, status
from .router_support import (  # noqa: F401 - fixtures
    ANTHROPIC_KEY,
    anthropic_fake,
    cloud_keys,
    hybrid_config,
    openai_fake,
    openrouter_fake,
    route,
    write_config,
)

pytestmark = pytest.mark.usefixtures("cloud_keys")
LONG_TASK = "describe the sea " * 300  # far past the fixture model's 512-token context


@pytest.fixture
def local_fake():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_config(tmp_path, anthropic, openrouter, cloud_openai, local, fault: str,
                   source: str) -> tuple[dict, dict]:
    """A config that prefers the cloud everywhere, with the local side broken by `fault`."""
    data = hybrid_config(anthropic, openrouter)
    providers = data["providers"]
    # a cloud openai-compatible endpoint on loopback: loopback alone does not make it local
    providers["cloudvllm"] = {"type": "openai", "baseUrl": cloud_openai.base_url}
    data["fallbackChain"] = ["anthropic", "openrouter", "cloudvllm", "onnx"]
    data["routing"]["rules"] = [
        {"condition": {"agentType": ["lawyer"]}, "action": {"localOnly": True}},
        {"condition": {"complexity": ["low", "medium", "high"]},
         "action": {"provider": "anthropic"}, "reason": "everything to Claude"},
    ]
    flags: dict = {}
    task = "Summarise this confidential contract."
    if fault in ("missing_model", "local_500", "local_hang", "local_down", "local_midstream"):
        providers["onnx"]["models"]["default"] = str(tmp_path / "not-installed")
    elif fault == "invalid_model":
        (tmp_path / "empty-model").mkdir()
        providers["onnx"]["models"]["default"] = str(tmp_path / "empty-model")
    elif fault == "broken_model":
        broken = tmp_path / "broken-model"
        broken.mkdir()
        (broken / "genai_config.json").write_text("{not json", encoding="utf-8")
        providers["onnx"]["models"]["default"] = str(broken)
    elif fault == "overflow":
        task = LONG_TASK
    if fault.startswith("local_"):
        url = (f"http://127.0.0.1:{closed_port()}/v1" if fault == "local_down"
               else local.base_url)
        providers["mybox"] = {"type": "openai", "baseUrl": url, "local": True, "timeout": 200,
                              "maxRetries": 1}
        data["fallbackChain"].append("mybox")
        local.default = {"local_500": status(500), "local_hang": Behaviour("hang", hang_s=3),
                         "local_midstream": Behaviour("midstream_error")}.get(fault, status(500))
    if source == "flag privacy":
        flags["privacy"] = "high"
    elif source == "flag local-only":
        flags["local_only"] = True
    elif source == "config privacy":
        data["privacy"] = "high"
    elif source == "config localOnly":
        data["localOnly"] = True
    elif source == "rule":
        flags["agent"] = "lawyer"
    return data, {"task": task, **flags}


FAULTS = ["missing_model", "invalid_model", "broken_model", "overflow", "local_500",
          "local_hang", "local_down", "local_midstream"]
SOURCES = ["flag privacy", "flag local-only", "config privacy", "config localOnly", "rule"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("fault", FAULTS)
def test_private_requests_never_reach_the_cloud(tmp_path, anthropic_fake, openrouter_fake,
                                                openai_fake, local_fake, fault, source):
    data, arguments = private_config(tmp_path, anthropic_fake, openrouter_fake, openai_fake,
                                     local_fake, fault, source)
    with pytest.raises(AgenticError) as caught:
        route(write_config(tmp_path, data), **arguments)
    assert (anthropic_fake.count, openrouter_fake.count, openai_fake.count) == (0, 0, 0)
    assert "anthropic" not in caught.value.message.replace("anthropic/", "")


def test_control_the_same_faults_without_privacy_do_reach_the_cloud(
        tmp_path, anthropic_fake, openrouter_fake, openai_fake, local_fake):
    """The fixture above is not vacuous: without privacy the same request goes to the cloud."""
    data, arguments = private_config(tmp_path, anthropic_fake, openrouter_fake, openai_fake,
                                     local_fake, "missing_model", "none")
    routed = route(write_config(tmp_path, data), **arguments)
    assert routed.response.provider == "anthropic" and anthropic_fake.count == 1


def test_a_private_request_is_answered_by_a_local_endpoint(tmp_path, anthropic_fake,
                                                          openrouter_fake, openai_fake,
                                                          local_fake):
    data, arguments = private_config(tmp_path, anthropic_fake, openrouter_fake, openai_fake,
                                     local_fake, "local_500", "flag privacy")
    local_fake.default = Behaviour("ok")
    routed = route(write_config(tmp_path, data), **arguments)
    assert routed.response.provider == "mybox" and routed.response.text == "Hello from the cloud."
    assert routed.decision.rule == "privacy"
    assert [a.provider for a in routed.attempts] == ["onnx", "mybox"]
    assert (anthropic_fake.count, openrouter_fake.count, openai_fake.count) == (0, 0, 0)
    assert routed.response.cost_usd == 0.0  # local endpoints are free


def test_a_private_request_with_a_working_local_model(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake)
    routed = route(write_config(tmp_path, data), privacy="high")
    assert routed.response.provider == "onnx" and routed.decision.private
    assert {name for name, _ in routed.decision.excluded} == {"anthropic", "openrouter"}
    assert (anthropic_fake.count, openrouter_fake.count) == (0, 0)


def test_several_local_failures_give_a_privacy_error(tmp_path, anthropic_fake, openrouter_fake,
                                                     openai_fake, local_fake):
    data, arguments = private_config(tmp_path, anthropic_fake, openrouter_fake, openai_fake,
                                     local_fake, "local_500", "flag privacy")
    with pytest.raises(PrivacyError, match="No local provider could answer") as caught:
        route(write_config(tmp_path, data), **arguments)
    assert "never goes to a cloud provider" in caught.value.hint


def test_explicit_cloud_provider_with_privacy_is_refused(tmp_path, anthropic_fake):
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    with pytest.raises(UsageError, match="cloud provider, but this request is private"):
        route(config, provider="anthropic", local_only=True)
    assert anthropic_fake.count == 0


def test_the_executor_refuses_a_cloud_candidate_even_if_rules_let_one_through(anthropic_fake):
    """Defence in depth: bypass the rules and hand the executor a cloud candidate directly."""
    provider = AnthropicProvider("anthropic", anthropic_fake.base_url, ANTHROPIC_KEY,
                                 "ANTHROPIC_API_KEY", 2.0)
    executor = FallbackExecutor(
        candidates=[Candidate("anthropic", "claude", local=True)],  # a lying candidate
        provider_for=lambda name: provider,
        request_for=lambda c: ChatRequest.of([{"role": "user", "content": "x"}], model=c.model,
                                             options=build_options()),
        private=True)
    with pytest.raises(PrivacyError, match="Refused to send a private request"):
        list(executor.stream())
    assert anthropic_fake.count == 0
