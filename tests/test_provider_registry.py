"""Provider kinds are classes in a registry: the router decides by their flags alone.

Two throwaway kinds are registered for these tests (and removed after): a local one that
cannot call tools, and a cloud one that needs a key. Real config files, the real rules and the
real fallback executor decide about them; nothing of the router is mocked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, Usage
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.router.config_lookup import load_config
from agentic_onnx.router.errors import ConfigError, MissingKeyError
from agentic_onnx.router.execute import plan_route, route_and_stream
from agentic_onnx.router.provider_kinds import (
    provider_class,
    provider_kinds,
    register_provider,
    unregister_provider,
)
from agentic_onnx.router.providers import Provider, build_provider
from agentic_onnx.router.rules import RouteFlags, decide, is_local, model_for

from .router_support import write_config

ROUTER = Path(__file__).resolve().parent.parent / "agentic_onnx" / "router"
KEY_VARIABLE = "THROWAWAY_CLOUD_KEY"


class LocalEcho(Provider):
    """Runs on this machine (in this process); cannot call tools."""

    kind = "echo-local"
    local = True

    def stream(self, request: Any) -> Iterator[StreamEvent]:
        yield TextDelta("echo")
        yield Usage(3, 1)
        yield Finish("stop")


class KeyedCloud(Provider):
    """A cloud kind with a key variable, a vendor URL and default models; never reached here."""

    kind = "keyed-cloud"
    needs_key = True
    key_env_var = KEY_VARIABLE
    supports_tools = True
    default_base_url = "https://cloud.invalid/v1"
    default_models = {"default": "cloud-large", "fast": "cloud-small"}

    def __init__(self, name: str, api_key: str | None, key_variable: str | None) -> None:
        super().__init__(name, local=False)
        self.api_key, self.key_variable = api_key, key_variable

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any, **local_settings: Any) -> KeyedCloud:
        return cls(name, loaded.api_key(name), cls.key_env_var_for(loaded, name))

    def prepare(self, request: Any) -> None:
        if not self.api_key:
            raise MissingKeyError(self.name, self.key_variable or KEY_VARIABLE)

    def stream(self, request: Any) -> Iterator[StreamEvent]:
        raise AssertionError("the tests never send to the cloud kind")


@pytest.fixture(autouse=True)
def throwaway_kinds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    register_provider(LocalEcho.kind, LocalEcho)
    register_provider(KeyedCloud.kind, KeyedCloud)
    yield
    unregister_provider(LocalEcho.kind)
    unregister_provider(KeyedCloud.kind)


def config_file(tmp_path: Path, **overrides: Any) -> Path:
    """Cloud first, then the local echo, then onnx."""
    data: dict[str, Any] = {
        "defaultProvider": "cloud", "fallbackChain": ["cloud", "mine", "onnx"],
        "providers": {"cloud": {"type": "keyed-cloud"}, "mine": {"type": "echo-local"},
                      "onnx": {}}}
    data.update(overrides)
    return write_config(tmp_path, data)


def chat(task: str = "Say hello.") -> ChatRequest:
    return ChatRequest.of([{"role": "user", "content": task}],
                          options=build_options(max_tokens=8))


def test_the_registry_holds_the_builtin_kinds_and_the_new_ones():
    assert provider_kinds()[:4] == ("onnx", "anthropic", "openrouter", "openai")
    assert provider_class("echo-local") is LocalEcho
    assert provider_class("anthropic").key_env_var == "ANTHROPIC_API_KEY"
    assert provider_class("openrouter").default_base_url == "https://openrouter.ai/api/v1"
    assert provider_class("onnx").local and not provider_class("openai").local


def test_a_new_kind_is_configured_from_its_class_flags(tmp_path, monkeypatch):
    loaded = load_config(config_file(tmp_path))
    config = loaded.config
    assert config.entry("cloud").urls(config.kind_of("cloud")) == ["https://cloud.invalid/v1"]
    assert loaded.key_env_vars["cloud"] == KEY_VARIABLE
    assert model_for(config, "cloud", None) == "cloud-large"
    assert model_for(config, "cloud", "fast") == "cloud-small"
    assert is_local(config, "mine") and not is_local(config, "cloud")
    monkeypatch.setenv(KEY_VARIABLE, "k-0123456789abcdef")
    provider = build_provider(load_config(config_file(tmp_path)), "cloud")
    assert isinstance(provider, KeyedCloud) and provider.api_key == "k-0123456789abcdef"
    assert isinstance(build_provider(loaded, "mine"), LocalEcho)


def test_a_kind_that_is_not_registered_is_a_config_error(tmp_path):
    path = config_file(tmp_path)
    unregister_provider(LocalEcho.kind)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "providers.mine.type" in caught.value.message
    assert "'onnx', 'anthropic', 'openrouter', 'openai' or 'keyed-cloud'" in caught.value.message


def test_a_local_kind_answers_a_private_request(tmp_path):
    path = config_file(tmp_path)
    _, decision = plan_route(chat(), RouteFlags(privacy="high"), str(path))
    assert (decision.provider, decision.rule) == ("mine", "privacy")
    assert [(c.provider, c.local) for c in decision.candidates] == [("mine", True),
                                                                     ("onnx", True)]
    assert decision.excluded == [("cloud", "cloud provider; request is private "
                                           "(--privacy high)")]
    routed = route_and_stream(chat(), RouteFlags(privacy="high"), config_path=str(path))
    assert routed.response is not None
    routed.response.consume()
    assert (routed.response.provider, routed.response.text) == ("mine", "echo")


def test_a_private_request_may_not_name_the_cloud_kind(tmp_path):
    from agentic_onnx.core.errors import UsageError

    with pytest.raises(UsageError, match="--provider cloud is a cloud provider"):
        plan_route(chat(), RouteFlags(provider="cloud", privacy="high"),
                   str(config_file(tmp_path)))


def test_a_kind_that_needs_a_key_is_skipped_with_one_line_when_it_is_unset(tmp_path):
    notices: list[str] = []
    routed = route_and_stream(chat(), RouteFlags(), config_path=str(config_file(tmp_path)),
                              on_notice=notices.append)
    assert routed.response is not None
    routed.response.consume()
    assert notices == [f"Skipped cloud: {KEY_VARIABLE} is not set."]
    assert (routed.response.provider, routed.response.text) == ("mine", "echo")
    assert [(a.provider, a.outcome) for a in routed.attempts] == [("cloud", "failed"),
                                                                  ("mine", "ok")]


def test_the_optimised_modes_pass_over_a_kind_whose_key_is_unset(tmp_path, monkeypatch):
    path = config_file(tmp_path, routing={"mode": "quality-optimized"})
    _, decision = plan_route(chat(), RouteFlags(), str(path))
    assert "cloud" not in [c.provider for c in decision.candidates]
    monkeypatch.setenv(KEY_VARIABLE, "k-0123456789abcdef")
    _, decision = plan_route(chat(), RouteFlags(), str(path))
    assert "cloud" in [c.provider for c in decision.candidates]


def test_a_kind_without_tools_is_not_chosen_when_the_request_needs_tools(tmp_path):
    path = config_file(tmp_path, defaultProvider="mine", fallbackChain=["mine", "onnx"])
    config = load_config(path).config
    plain = decide(config, RouteFlags(), "Say hello.")
    assert [c.provider for c in plain.candidates] == ["mine", "onnx"]
    tools = decide(config, RouteFlags(requires_tools=True), "Say hello.")
    assert tools.provider == "onnx"
    assert [c.provider for c in tools.candidates] == ["onnx"]
    assert ("mine", "cannot call tools; the request needs tools") in tools.excluded
    assert "mine cannot call tools, so onnx answers first" in tools.reason


def test_a_kind_named_by_its_kind_works_without_an_entry(tmp_path):
    path = write_config(tmp_path, {"providers": {"onnx": {}}})
    _, decision = plan_route(chat(), RouteFlags(provider="echo-local"), str(path))
    assert [(c.provider, c.local) for c in decision.candidates] == [("echo-local", True)]


def kind_names_compared(path: Path, kinds: set[str]) -> list[str]:
    """`path:line 'kind'` for each string constant naming a kind inside a comparison."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and part.value in kinds:
                    found.append(f"{path.name}:{part.lineno} {part.value!r}")
    return found


def test_the_finder_finds_a_comparison_with_a_kind_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('if kind in ("anthropic", "x") or name == "onnx":\n    pass\n',
                      encoding="utf-8")
    assert kind_names_compared(sample, {"onnx", "anthropic"}) == ["sample.py:1 'anthropic'",
                                                                   "sample.py:1 'onnx'"]


@pytest.mark.parametrize("module", ["rules.py", "execute.py", "embeddings.py", "config_compat.py",
                                    "config_view.py"])
def test_routing_compares_no_kind_names(module):
    assert kind_names_compared(ROUTER / module, set(provider_kinds())) == []
