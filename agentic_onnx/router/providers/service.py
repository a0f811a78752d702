"""The local provider's requests sent to the resident service (router/service.py) instead of a
model loaded in this process: the same ChatRequest over the service's OpenAI endpoint, with the
service's token as the key. `prepare` asks the service to have the model resident
(`POST /api/load`): loading stays out of the time to first token, and `load_s` is 0 when the
model was already loaded. Images travel as `data:` URLs where their markers stand; `top_k` and a
LoRA adapter (`MODEL:ADAPTER`) as the service understands them. Nothing leaves the machine: the
service listens on loopback only.
"""

from __future__ import annotations

import base64
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.router.deployments import BreakerSettings, Endpoint
from agentic_onnx.router.providers.http import post_json
from agentic_onnx.router.providers.openai_compat import OpenAICompatProvider
from agentic_onnx.router.service import ServiceState

LOAD_TIMEOUT_S = 600.0  # a large model from a cold disk


class ServiceProvider(OpenAICompatProvider):
    kind = "onnx"
    supports_images = True
    label = "agentic-onnx service"

    def __init__(self, name: str, state: ServiceState, timeout_s: float = 600.0,
                 resolve: Any = None) -> None:
        # The token as the key; this client writes the request's usage row itself.
        endpoint = Endpoint(name, f"{state.url}/v1", state.token,
                            {"x-agentic-logged": "client"}, local=True)
        super().__init__(name, [endpoint], None, timeout_s,
                         breaker=BreakerSettings(enabled=False))
        self.service = state
        self._resolve = resolve  # model spec -> ModelFolder, as in process (offers downloads)
        self.model_name: str | None = None
        self._loaded_for: tuple[str | None, str | None] | None = None
        self._load_spec = ""
        self._adapter: str | None = None
        self.model_path = ""
        self.threads = 0

    def prepare(self, request: ChatRequest) -> None:
        """The model resident in the service (loaded now if it was not): its id, EP, load time."""
        from agentic_onnx.router.providers.http import make_client

        if self._client is None:
            self._client = make_client(self._timeout_s)
        wanted = (request.model, request.adapter)
        if self._loaded_for == wanted:
            return
        # Resolved here, exactly as in process (ids, aliases, names, paths, the recommendation,
        # the download offer); the service loads the folder.
        if self._resolve is None:
            from agentic_onnx.core.models.resolve import resolve_model

            self._resolve = resolve_model
        folder = self._resolve(request.model)
        self._load_spec = str(folder.path)
        self._adapter = _absolute_adapter(request.adapter)
        loader = make_client(LOAD_TIMEOUT_S)
        try:
            reply = post_json(loader, self._target, f"{self.service.url}/api/load",
                              self._request_headers(self._endpoints[0]),
                              {"model": str(folder.path), "adapter": self._adapter})
        finally:
            loader.close()
        self.model_name = str(reply.get("model") or folder.name)
        self.model_path = str(folder.path)
        self.threads = int(reply.get("threads") or 0)
        self.execution_provider = reply.get("execution_provider")
        self.load_s = float(reply.get("load_s") or 0.0)
        self.warnings = [str(warning) for warning in reply.get("warnings") or []]
        self._loaded_for = wanted

    def _payload(self, request: ChatRequest, endpoint: Endpoint) -> dict[str, Any]:
        payload = super()._payload(request, endpoint)
        # The folder, not the id: the service loads it again if it unloaded it meanwhile; the
        # adapter (a name beside the model, or this machine's absolute path) in its own field.
        payload["model"] = self._load_spec
        if self._adapter:
            payload["adapter"] = self._adapter
        if "top_k" in request.options.model_fields_set:
            payload["top_k"] = request.options.top_k
        if request.images:
            payload["messages"] = with_image_parts(list(request.messages), request.images)
        return payload


def _absolute_adapter(adapter: str | None) -> str | None:
    """An adapter file given by a relative path means this directory's, not the service's."""
    if adapter and adapter.endswith(".onnx_adapter"):
        from pathlib import Path

        path = Path(adapter).expanduser()
        if path.is_file():
            return str(path.resolve())
    return adapter


def with_image_parts(messages: list[dict[str, Any]], images: Any) -> list[dict[str, Any]]:
    """Messages whose image markers (core.generation.vision) become `image_url` parts with
    `data:` URLs, in order; with no marker anywhere, the images open the last user message."""
    from agentic_onnx.core.generation.vision import IMAGE_MARKER

    pending = list(images)
    if not any(IMAGE_MARKER in str(message.get("content") or "") for message in messages):
        last = max(index for index, message in enumerate(messages) if message.get("role") == "user")
        messages[last] = {**messages[last], "content": IMAGE_MARKER * len(pending)
                          + str(messages[last].get("content") or "")}
    converted = []
    for message in messages:
        text = str(message.get("content") or "")
        if IMAGE_MARKER not in text:
            converted.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for index, piece in enumerate(text.split(IMAGE_MARKER)):
            if index:
                image = pending.pop(0)
                url = f"data:image/{image.format or 'png'};base64,{base64.b64encode(image.data).decode()}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
            if piece:
                parts.append({"type": "text", "text": piece})
        converted.append({**message, "content": parts})
    return converted


def smoke_test_via(state: ServiceState, model_spec: str | None) -> Any:  # noqa: ANN401
    """`onnx test` answered by the service: the same fixed request, its model loaded there."""
    from agentic_onnx.core.bench.runs import smoke_request, smoke_result
    from agentic_onnx.core.generation.response import Response

    provider = ServiceProvider("onnx", state)
    request = smoke_request(model_spec)
    provider.prepare(request)
    response = Response(provider.stream(request), "onnx", provider.model_name or "",
                        execution_provider=provider.execution_provider, load_s=provider.load_s)
    return smoke_result(response.consume(), provider.model_path, provider.threads,
                        provider.warnings)
