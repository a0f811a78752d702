"""Any OpenAI-compatible chat-completions endpoint, streamed: vLLM, llama-server, Ollama, Foundry
Local, a local `agentic-onnx serve`, OpenAI itself (and OpenRouter, in openrouter.py).

Several base URLs are balanced by least in-flight requests (process-wide, so `serve` threads
share the count); a retry avoids the URL that just failed when another is free. The stream is
`data: {chunk}` lines ending with `data: [DONE]`; usage arrives in the last chunk
(`stream_options.include_usage`); an `error` object may arrive inside a 200 stream.
`embed` posts to the same server's `/embeddings` (router/embeddings.py is its caller).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.router.provider_kinds import is_loopback_url
from agentic_onnx.router.errors import MissingKeyError, ProviderError
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


class LeastInFlight:
    """Pick the base URL with the fewest requests in flight (ties: the one not just failed,
    then config order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = defaultdict(int)

    def acquire(self, urls: Sequence[str], avoid: str | None = None) -> str:
        with self._lock:
            chosen = min(urls, key=lambda url: (self._in_flight[url], url == avoid,
                                                 urls.index(url)))
            self._in_flight[chosen] += 1
            return chosen

    def release(self, url: str) -> None:
        with self._lock:
            self._in_flight[url] = max(self._in_flight[url] - 1, 0)


BALANCER = LeastInFlight()


class OpenAICompatProvider(Provider):
    kind = "openai"
    can_be_marked_local = True
    supports_tools = True
    needs_base_url = True
    embeddings_api = True
    entry_keys = frozenset({"organization"})
    label = "OpenAI-compatible endpoint"

    def __init__(self, name: str, base_urls: Sequence[str], api_key: str | None,
                 key_env_var: str | None, timeout_s: float, local: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        # Local only when marked so AND every URL is loopback (config checks this too).
        super().__init__(name, local=local and all(is_loopback_url(url) for url in base_urls))
        self._urls = [url.rstrip("/") for url in base_urls]
        self._api_key = api_key
        self._target = HttpTarget(name, f"{self.label} {name!r}" if self.kind == "openai"
                                  else self.label, key_env_var)
        self._timeout_s = timeout_s
        self._headers = dict(headers or {})
        self._client: Any = None
        self._last_failed: str | None = None
        self.reported_cost_usd: float | None = None

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any,
                    **local_settings: Any) -> OpenAICompatProvider:
        from agentic_onnx.router.config_compat import named_provider

        headers = dict(entry.headers)
        if entry.organization:  # agentic-flow's `organization`; an explicit header wins
            headers.setdefault("OpenAI-Organization", entry.organization)
        provider = cls(name, entry.urls(cls.kind), loaded.api_key(name),
                       cls.key_env_var_for(loaded, name), entry.timeout / 1000,
                       local=entry.local, headers=headers)
        named = named_provider(name, entry)
        if named is not None and named.key_env_var:
            provider.needs_key = True  # gemini: a missing key fails before anything is sent
        return provider

    def prepare(self, request: ChatRequest) -> None:
        refuse_images(self.name, request)
        if self.needs_key and not self._api_key:
            raise MissingKeyError(self.name, self._target.key_env_var or "OPENAI_API_KEY")
        if self._client is None:
            self._client = make_client(self._timeout_s)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.prepare(request)
        self.reported_cost_usd = None
        with self._balanced_url() as url:
            yield from self._stream_from(url, request)

    def embed(self, texts: Sequence[str], model: str, *, dimensions: int | None = None,
              input_type: str | None = None) -> EmbeddingsReply:
        """POST `{baseUrl}/embeddings` (OpenAI's format) for at most 2,048 texts; the answer
        is checked (openai_embeddings.parse_embeddings). Call `prepare` first."""
        if self._client is None:
            self._client = make_client(self._timeout_s)
        payload = embeddings_payload(texts, model, dimensions, input_type)
        with self._balanced_url() as url:
            body = post_json(self._client, self._target, f"{url}/embeddings",
                             self._request_headers(), payload)
        return parse_embeddings(body, len(texts), self._target, dimensions)

    @contextmanager
    def _balanced_url(self) -> Iterator[str]:
        """The base URL for one request (least in flight); remembers a failed one."""
        url = BALANCER.acquire(self._urls, avoid=self._last_failed)
        try:
            yield url
            self._last_failed = None
        except ProviderError:
            self._last_failed = url
            raise
        finally:
            BALANCER.release(url)

    def _stream_from(self, url: str, request: ChatRequest) -> Iterator[StreamEvent]:
        parser = _ChunkStream(self._target)
        events = sse_events(self._client, self._target, f"{url}/chat/completions",
                            self._request_headers(), self._payload(request))
        with closing(events):
            for sse in events:
                yield from parser.feed(sse.data)
                if parser.done:
                    break
        yield from parser.finish()
        self.reported_cost_usd = parser.cost_usd

    def _request_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        options, chosen = request.options, request.options.model_fields_set
        payload: dict[str, Any] = {"model": request.model, "messages": list(request.messages),
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
