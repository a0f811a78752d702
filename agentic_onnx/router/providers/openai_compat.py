"""Any OpenAI-compatible chat-completions endpoint, streamed: vLLM, llama-server, Ollama, Foundry
Local, a local `agentic-onnx serve`, OpenAI itself (and OpenRouter, in openrouter.py).

Several base URLs (`baseUrls`, or `deployments` with their own keys, weights, models and limits)
are balanced by router/deployments.py: a request that fails on one deployment before any output
moves at once to another (each at most once), and the circuit breaker keeps failing ones out.
The stream is `data: {chunk}` lines ending with `data: [DONE]`; usage arrives in the last chunk
(`stream_options.include_usage`); an `error` object may arrive inside a 200 stream.
`embed` posts to the same server's `/embeddings` (router/embeddings.py is its caller).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.router import deployments
from agentic_onnx.router.deployments import (
    BreakerSettings,
    Endpoint,
    counts_as_failure,
    endpoints_for,
)
from agentic_onnx.router.provider_kinds import is_loopback_url
from agentic_onnx.router.errors import MissingKeyError, PrivacyError, ProviderError
from agentic_onnx.router.providers.base import Provider, refuse_images
from agentic_onnx.router.providers.http import (
    RETRYABLE_STATUSES,
    HttpTarget,
    make_client,
    post_json,
    sse_events,
)
from agentic_onnx.router.providers.openai_embeddings import (
    EmbeddingsReply,
    embeddings_payload,
    parse_embeddings,
)

FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                  "function_call": "tool_calls", "content_filter": "stop"}
RETRYABLE_ERROR_CODES = {"rate_limit_exceeded", "server_error", "overloaded", "timeout"}


class OpenAICompatProvider(Provider):
    kind = "openai"
    can_be_marked_local = True
    supports_tools = True
    needs_base_url = True
    embeddings_api = True
    entry_keys = frozenset({"organization"})
    label = "OpenAI-compatible endpoint"

    def __init__(self, name: str, endpoints: Sequence[Endpoint], key_env_var: str | None,
                 timeout_s: float, strategy: str = "least-outstanding",
                 breaker: BreakerSettings | None = None) -> None:
        # Local only when every deployment is (endpoints_for checks each one's address).
        super().__init__(name, local=bool(endpoints) and all(e.local for e in endpoints))
        self._endpoints = list(endpoints)
        self._target = HttpTarget(name, f"{self.label} {name!r}" if self.kind == "openai"
                                  else self.label, key_env_var)
        self._timeout_s = timeout_s
        self._strategy = strategy
        self._breaker = breaker or BreakerSettings()
        self._client: Any = None
        self.reported_cost_usd: float | None = None

    @classmethod
    def at(cls, name: str, base_urls: Sequence[str], api_key: str | None = None,
           key_env_var: str | None = None, timeout_s: float = 60.0, local: bool = False,
           headers: dict[str, str] | None = None) -> OpenAICompatProvider:
        """A provider for plain base URLs sharing one key and headers (no config entry)."""
        return cls(name, [Endpoint(name, url.rstrip("/"), api_key, dict(headers or {}),
                                   local and is_loopback_url(url)) for url in base_urls],
                   key_env_var, timeout_s)

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any,
                    **local_settings: Any) -> OpenAICompatProvider:
        from agentic_onnx.router.config_compat import named_provider

        endpoints = endpoints_for(loaded, name, entry, cls.kind,
                                  private=bool(local_settings.get("private")))
        if entry.organization:  # agentic-flow's `organization`; an explicit header wins
            endpoints = [replace(e, headers={"OpenAI-Organization": entry.organization,
                                             **e.headers}) for e in endpoints]
        provider = cls(name, endpoints, cls.key_env_var_for(loaded, name), entry.timeout / 1000,
                       entry.strategy,
                       BreakerSettings.from_config(loaded.config.routing.performance))
        named = named_provider(name, entry)
        if named is not None and named.key_env_var:
            provider.needs_key = True  # gemini: a missing key fails before anything is sent
        return provider

    def prepare(self, request: ChatRequest) -> None:
        refuse_images(self.name, request)
        if self.needs_key and not all(e.api_key for e in self._endpoints):
            raise MissingKeyError(self.name, self._target.key_env_var or "OPENAI_API_KEY")
        if not self._endpoints:
            raise PrivacyError(f"{self.name} has no local deployment for a private request.",
                               "Mark a loopback (or trustedHosts) deployment local, or route "
                               "private requests elsewhere.")
        if self._client is None:
            self._client = make_client(self._timeout_s)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream from one deployment; one that fails before any output hands the request to
        the next (each deployment at most once per call)."""
        self.prepare(request)
        self.reported_cost_usd = None
        tried: list[Endpoint] = []
        failure: ProviderError | None = None
        while True:
            try:
                lease = deployments.DEPLOYMENTS.acquire(self._endpoints, self._strategy,
                                                        self._breaker, tried)
            except ProviderError:
                if failure is not None:  # the others cool down: the failure that counts
                    raise failure from None
                raise
            self.deployment = lease.endpoint
            output, tokens = False, 0
            try:
                for event in self._stream_from(lease.endpoint, request):
                    if not output and isinstance(event, (TextDelta, ToolCallDelta)):
                        output = True
                        lease.first_output()
                    elif isinstance(event, Usage):
                        tokens = event.prompt_tokens + event.completion_tokens
                    yield event
            except ProviderError as error:
                lease.release(failed=counts_as_failure(error))
                tried.append(lease.endpoint)
                if output or not counts_as_failure(error) or \
                        len(tried) >= len(self._endpoints):
                    raise
                failure = error
                continue
            except BaseException:
                lease.release(failed=False)
                raise
            lease.release(failed=False, tokens=tokens)
            return

    def embed(self, texts: Sequence[str], model: str, *, dimensions: int | None = None,
              input_type: str | None = None) -> EmbeddingsReply:
        """POST `{baseUrl}/embeddings` (OpenAI's format) for at most 2,048 texts; the answer
        is checked (openai_embeddings.parse_embeddings). Call `prepare` first."""
        if self._client is None:
            self._client = make_client(self._timeout_s)
        with deployments.DEPLOYMENTS.lease(self._endpoints, self._strategy, self._breaker) as lease:
            payload = embeddings_payload(texts, lease.endpoint.model or model, dimensions,
                                         input_type)
            body = post_json(self._client, self._target, f"{lease.endpoint.url}/embeddings",
                             self._request_headers(lease.endpoint), payload)
        return parse_embeddings(body, len(texts), self._target, dimensions)

    def _stream_from(self, endpoint: Endpoint, request: ChatRequest) -> Iterator[StreamEvent]:
        parser = _ChunkStream(self._target)
        events = sse_events(self._client, self._target, f"{endpoint.url}/chat/completions",
                            self._request_headers(endpoint), self._payload(request, endpoint))
        with closing(events):
            for sse in events:
                yield from parser.feed(sse.data)
                if parser.done:
                    break
        yield from parser.finish()
        self.reported_cost_usd = parser.cost_usd

    def _request_headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = dict(endpoint.headers)
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return headers

    def _payload(self, request: ChatRequest, endpoint: Endpoint) -> dict[str, Any]:
        options, chosen = request.options, request.options.model_fields_set
        payload: dict[str, Any] = {"model": endpoint.model or request.model,
                                   "messages": list(request.messages),
                                   "stream": True, "stream_options": {"include_usage": True},
                                   "max_tokens": options.max_tokens}
        for option in ("temperature", "top_p", "seed"):
            if option in chosen:
                payload[option] = getattr(options, option)
        if options.stop:
            payload["stop"] = list(options.stop)
        if request.response_format is not None:
            payload["response_format"] = openai_response_format(request.response_format)
        if request.tools:
            payload["tools"] = request.openai_tools()
            if request.tool_choice is not None:
                payload["tool_choice"] = openai_tool_choice(request.tool_choice)
        return payload


def openai_response_format(fmt: Any) -> dict[str, Any]:
    """core.answers.structured.ResponseFormat -> `response_format` (json_schema, or json_object)."""
    if fmt.json_mode:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": fmt.name,
                                                   "schema": fmt.cloud_schema()}}


def openai_tool_choice(choice: Any) -> Any:
    """core.answers.tools.ToolChoice -> `tool_choice` ("auto"/"none"/"required" or a named function)."""
    if choice.mode == "named":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


class _ChunkStream:
    """Turns chat.completion.chunk objects into our events."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.cost_usd: float | None = None
        self._chunks = 0
        self._tool_ids: dict[int, str] = {}

    def feed(self, data: str) -> Iterator[StreamEvent]:
        data = data.strip()
        if data == "[DONE]":
            self.done = True
            return
        if not data:
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ProviderError(self.target.provider, f"{self.target.label} sent a malformed "
                                "stream chunk.", "Check that baseUrl is an OpenAI-compatible API.",
                                retryable=False) from None
        if chunk.get("error"):
            raise self._error(chunk["error"])
        self._record_usage(chunk.get("usage"))
        for choice in chunk.get("choices") or []:
            yield from self._choice(choice)

    def finish(self) -> Iterator[StreamEvent]:
        if not self.done and self.finish_reason is None:
            raise ProviderError(self.target.provider, f"{self.target.label} closed the stream "
                                "before it finished.", "Try again.", retryable=True)
        yield self.usage or Usage(0, self._chunks)
        yield Finish(FINISH_REASONS.get(self.finish_reason or "stop", "stop"))  # type: ignore[arg-type]

    def _choice(self, choice: dict[str, Any]) -> Iterator[StreamEvent]:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self._chunks += 1
            yield TextDelta(delta["content"])
        for call in delta.get("tool_calls") or []:
            index = int(call.get("index", 0))
            if call.get("id"):
                self._tool_ids[index] = str(call["id"])
            function = call.get("function") or {}
            yield ToolCallDelta(self._tool_ids.get(index, f"call_{index}"), function.get("name"),
                                function.get("arguments") or "")
        reason = choice.get("finish_reason")
        if reason == "error":
            raise ProviderError(self.target.provider, f"{self.target.label} ended the stream "
                                "with an error.", "Try again.", retryable=True)
        if reason:
            self.finish_reason = reason

    def _record_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        self.usage = Usage(int(usage.get("prompt_tokens") or 0),
                           int(usage.get("completion_tokens") or 0),
                           int(cached) if isinstance(cached, int) and cached >= 0 else 0)
        if isinstance(usage.get("cost"), (int, float)):
            self.cost_usd = float(usage["cost"])

    def _error(self, error: Any) -> ProviderError:
        if not isinstance(error, dict):
            error = {"message": str(error)}
        code = error.get("code")
        message = str(error.get("message") or "no message").strip().splitlines()[0][:300]
        status = code if isinstance(code, int) else None
        retryable = (status in RETRYABLE_STATUSES or (status or 0) >= 500
                     or code in RETRYABLE_ERROR_CODES)
        return ProviderError(self.target.provider,
                             f"{self.target.label} stream error: {message}"
                             + (f" (code {code})" if code is not None else ""),
                             "Try again shortly." if retryable else "Check the request.",
                             status=status, retryable=retryable)
