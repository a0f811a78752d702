"""The local provider: a model (catalog id, alias, custom name or folder path, via core.models.resolve)
loaded by core.generation.engine and answered by core.generation.local, the one local entry that
`chat` and `serve` use too. Nothing leaves the machine; cost is $0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.router.providers.base import Provider

Resolver = Callable[[str], Any]  # model spec -> core.models.model_folder.ModelFolder


class OnnxProvider(Provider):
    kind = "onnx"
    local = True
    supports_tools = True  # by constrained decoding; the catalog says which models do it well
    supports_images = True  # vision-language models
    catalog_models = True
    local_embeddings = True
    entry_keys = frozenset({"modelPath"})

    def __init__(self, name: str, execution_provider: str = "auto", threads: int | None = None,
                 resolve: Resolver | None = None, device_id: int | None = None) -> None:
        super().__init__(name, local=True)
        self._execution_provider = execution_provider
        self._threads = threads
        self._device_id = device_id
        self._resolve = resolve
        self._local: Any = None  # core.generation.local.LocalGeneration of the loaded model
        self._loaded_spec: str | None = None
        self.model_name: str | None = None
        self.warnings: list[str] = []

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any, *, execution_provider: str = "auto",
                    threads: int | None = None, resolve: Resolver | None = None,
                    use_service: bool = True, device_id: int | None = None,
                    **_: Any) -> Provider:
        """In process, or (a resident service runs for this user, and the command named no EP,
        thread count or GPU of its own) the service's ServiceProvider. `device_id`: the
        command's --device-id."""
        from agentic_onnx.router.local_settings import LocalSettings
        from agentic_onnx.router.service import service_for

        state = service_for(use_service, execution_provider, threads, device_id)
        if state is not None:
            from agentic_onnx.router.providers.service import ServiceProvider

            return ServiceProvider(name, state, resolve=resolve)
        settings = LocalSettings.from_entry(entry, execution_provider, threads, device_id)
        return cls(name, settings.execution_provider, settings.threads, resolve,
                   settings.device_id)

    def prepare(self, request: ChatRequest) -> None:
        """Resolve and load the model (cached per process by the engine); then what may fail
        before the model runs (images processed and counted, the adapter found). No model
        (none given, none configured) lets the resolver pick: core.models.resolve recommends one
        for this machine."""
        if self._local is None or self._loaded_spec != request.model:
            self._load(request)
        vision = self._local.prepare(request)
        if vision is not None:
            self.warnings.extend(warning for warning in vision.warnings
                                 if warning not in self.warnings)

    def _load(self, request: ChatRequest) -> None:
        from agentic_onnx.core.generation.engine import load_model
        from agentic_onnx.core.generation.local import LocalGeneration

        if self._resolve is None:
            from agentic_onnx.core.models.resolve import resolve_model

            self._resolve = resolve_model
        folder = self._resolve(request.model)
        loaded = load_model(folder, self._execution_provider, self._threads,
                            device_id=self._device_id)
        # Each routed request measures a whole prefill (run, router benchmark): no reuse.
        self._local = LocalGeneration(loaded, keep_prefix=False)
        self._loaded_spec = request.model
        self.model_name = folder.name
        self.execution_provider = loaded.execution_provider
        self.load_s = loaded.load_s
        self.warnings = list(loaded.warnings)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.prepare(request)
        yield from self._local.stream(request)

