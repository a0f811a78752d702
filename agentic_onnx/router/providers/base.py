"""The provider contract (after simonw/llm's model class): capability flags, and one method that
streams the typed events of `core.generation.events` for a request.

A provider is built from its config entry by `build_provider`; building one never touches the
network. `prepare` does the work that may fail before anything is sent (a missing key, loading a
local model); `stream` sends the request and yields events. Errors are `ProviderError`s whose
`retryable` flag tells the fallback layer whether asking the same provider again may help.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.request import ChatRequest

Message = dict[str, Any]


class Provider:
    """Base class. Subclasses set the flags and implement `stream`; provider_kinds.py registers
    each class under its `kind`, and the router decides by these flags alone."""

    kind: ClassVar[str] = ""  # its config `type`
    local: bool = False  # runs on this machine (an instance: this entry, see can_be_marked_local)
    can_be_marked_local: ClassVar[bool] = False  # `local: true` (loopback URLs only) makes it local
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None  # the standard variable its key comes from
    streams: ClassVar[bool] = True
    supports_tools: ClassVar[bool] = False
    supports_images: ClassVar[bool] = False
    default_base_url: ClassVar[str | None] = None
    needs_base_url: ClassVar[bool] = False  # an entry must give baseUrl/baseUrls
    default_models: ClassVar[Mapping[str, str]] = {}  # role (default, fast, ...) -> model id
    catalog_models: ClassVar[bool] = False  # models are local specs the catalog knows (tools)
    local_embeddings: ClassVar[bool] = False  # `embed` runs the local engine for it
    embeddings_api: ClassVar[bool] = False  # speaks OpenAI's `/embeddings`
    price_kind: ClassVar[str] = ""  # its section of data/prices.json ("": its kind)
    entry_keys: ClassVar[frozenset[str]] = frozenset()  # agentic-flow entry keys it acts on

    def __init__(self, name: str, local: bool) -> None:
        self.name = name
        self.local = local

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any, **local_settings: Any) -> Provider:
        """The provider for config entry `name`: no client built, no key checked. `loaded` is a
        router.config.LoadedConfig and `entry` its ProviderConfig (named, not imported: config
        sits above the providers); `local_settings` (execution_provider, threads, resolve) are
        for local kinds."""
        return cls(name, cls.local)

    @classmethod
    def key_env_var_for(cls, loaded: Any, name: str) -> str | None:
        """The variable entry `name`'s key comes from: its `${VAR}`, else the kind's."""
        return loaded.key_env_vars.get(name) or cls.key_env_var

    def prepare(self, request: ChatRequest) -> None:
        """Checks and loading that may fail before anything is sent (default: none)."""

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        raise NotImplementedError

    # Details the caller may show once the stream started (local models fill them in).
    execution_provider: str | None = None
    load_s: float = 0.0
    deployment: Any = None  # the router.deployments.Endpoint that answered (balanced kinds)
    warnings: list[str] = []

    def __repr__(self) -> str:  # never includes keys
        return f"<{type(self).__name__} {self.name!r} local={self.local}>"


def refuse_images(provider: str, request: ChatRequest) -> None:
    """Cloud providers do not take our images yet: say so before anything is sent."""
    if request.images:
        from agentic_onnx.core.errors import UsageError

        raise UsageError(f"Provider {provider!r} cannot take images from agentic-onnx yet; "
                         "nothing was sent.",
                         "Use a local vision model (--provider onnx --model <vision model>).")


def system_and_turns(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """Split leading system messages off (Anthropic takes them as a separate field)."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    turns = [m for m in messages if m.get("role") != "system"]
    return ("\n\n".join(system) if system else None), turns
