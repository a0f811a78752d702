"""The local provider: a model (catalog id, alias, custom name or folder path, via core.models.resolve)
loaded by core.generation.engine. Nothing leaves the machine; cost is $0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.router.providers.base import Provider, ProviderRequest

Resolver = Callable[[str], Any]  # model spec -> core.models.model_folder.ModelFolder


class OnnxProvider(Provider):
    kind = "onnx"
    supports_tools = True  # by constrained decoding; the catalog says which models do it well

    def __init__(self, name: str, execution_provider: str = "auto", threads: int | None = None,
                 resolve: Resolver | None = None) -> None:
        super().__init__(name, local=True)
        self._execution_provider = execution_provider
        self._threads = threads
        self._resolve = resolve
        self._loaded: Any = None
        self._loaded_spec: str | None = None
        self._vision: Any = None  # core.generation.vision.VisionPrompt of the request being prepared
        self._vision_for: ProviderRequest | None = None
        self._adapter: tuple[str, Any] | None = None  # (--adapter as given, its .onnx_adapter file)
        self.model_name: str | None = None
        self.warnings: list[str] = []

    def prepare(self, request: ProviderRequest) -> None:
        """Resolve and load the model (cached per process by the engine). No model (none given,
        none configured) lets the resolver pick: core.models.resolve recommends one for this machine."""
        if self._loaded is None or self._loaded_spec != request.model:
            self._load(request)
        if request.images and self._vision_for is not request:
            # Processed and counted here: a prompt that cannot fit fails before the model runs.
            from agentic_onnx.core.generation.vision import prepare_vision_prompt

            self._vision = prepare_vision_prompt(self._loaded, request.messages, request.images)
            self._vision_for = request
            self.warnings.extend(self._vision.warnings)
        if request.adapter and (self._adapter is None or self._adapter[0] != request.adapter):
            from agentic_onnx.core.models.adapters import adapter_for

            self._adapter = (request.adapter, adapter_for(self._loaded.folder, request.adapter))

    def _adapter_file(self, request: ProviderRequest) -> Any:
        return self._adapter[1] if request.adapter and self._adapter is not None else None

    def _load(self, request: ProviderRequest) -> None:
        from agentic_onnx.core.generation.engine import load_model

        if self._resolve is None:
            from agentic_onnx.core.models.resolve import resolve_model

            self._resolve = resolve_model
        folder = self._resolve(request.model)
        self._loaded = load_model(folder, self._execution_provider, self._threads)
        self._loaded_spec = request.model
        self.model_name = folder.name
        self.execution_provider = self._loaded.execution_provider
        self.load_s = self._loaded.load_s
        self.warnings = list(self._loaded.warnings)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        """Plain, schema-constrained (core.answers.structured) or with tools (core.answers.tools)."""
        self.prepare(request)
        adapter = self._adapter_file(request)
        if adapter is not None and (request.tools or request.images):
            from agentic_onnx.core.errors import UsageError

            raise UsageError("--adapter cannot be combined with --tools or --image yet.",
                             "Drop one of them.")
        if request.images:
            yield from self._loaded.stream(request.messages, request.options, images=self._vision,
                                           tools=request.tools,
                                           guidance=request.response_format.guidance()
                                           if request.response_format is not None else None)
        elif request.tools:
            from agentic_onnx.core.answers.tools import AUTO, parse_tools, stream_with_tools

            yield from stream_with_tools(self._loaded, request.messages, request.options,
                                         parse_tools(list(request.tools)),
                                         request.tool_choice or AUTO)
        elif request.response_format is not None:
            yield from self._loaded.stream(request.messages, request.options,
                                           guidance=request.response_format.guidance(),
                                           adapter=adapter)
        else:
            yield from self._loaded.stream(request.messages, request.options, adapter=adapter)
