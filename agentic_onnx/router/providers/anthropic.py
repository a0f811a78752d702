"""Anthropic's Messages API, streamed (https://docs.anthropic.com/en/api/messages-streaming).

Events: message_start (input tokens), content_block_start (text or tool_use), content_block_delta
(text_delta, input_json_delta), content_block_stop, message_delta (stop_reason, output tokens),
message_stop, ping, error (e.g. overloaded_error, which is retryable like HTTP 529).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from agentic_onnx.core.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.router.errors import MissingKeyError, ProviderError
from agentic_onnx.router.providers.base import Provider, ProviderRequest, system_and_turns
from agentic_onnx.router.providers.http import HttpTarget, make_client, sse_events

API_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "tool_use": "tool_calls"}
RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicProvider(Provider):
    kind = "anthropic"
    supports_tools = True
    needs_key = True

    def __init__(self, name: str, base_url: str, api_key: str | None, key_env_var: str,
                 timeout_s: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(name, local=False)
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._target = HttpTarget(name, "Anthropic", key_env_var)
        self._timeout_s = timeout_s
        self._headers = dict(headers or {})
        self._client: Any = None

    def prepare(self, request: ProviderRequest) -> None:
        if not self._api_key:
            raise MissingKeyError(self.name, self._target.key_env_var or "ANTHROPIC_API_KEY")
        if self._client is None:
            self._client = make_client(self._timeout_s)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        self.prepare(request)
        headers = {"x-api-key": self._api_key or "", "anthropic-version": API_VERSION,
                   **self._headers}
        parser = _MessageStream(self.name)
        events = sse_events(self._client, self._target, f"{self._base_url}/v1/messages",
                            headers, self._payload(request))
        with closing(events):
            for sse in events:
                yield from parser.feed(sse.event, sse.data)
                if parser.done:
                    break
        yield from parser.finish()

    def _payload(self, request: ProviderRequest) -> dict[str, Any]:
        system, turns = system_and_turns(request.messages)
        options, chosen = request.options, request.options.model_fields_set
        payload: dict[str, Any] = {"model": request.model, "max_tokens": options.max_tokens,
                                   "messages": list(turns), "stream": True}
        if system:
            payload["system"] = system
        if "temperature" in chosen:
            payload["temperature"] = min(options.temperature, 1.0)
        if "top_p" in chosen:
            payload["top_p"] = options.top_p
        if "top_k" in chosen:
            payload["top_k"] = options.top_k
        if options.stop:
            payload["stop_sequences"] = list(options.stop)
        if request.tools:
            payload["tools"] = list(request.tools)
        return payload


class _MessageStream:
    """Turns Anthropic's SSE events into our events; keeps the usage and the stop reason."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.done = False
        self._tool_ids: dict[int, str] = {}

    def feed(self, event: str, data: str) -> Iterator[StreamEvent]:
        if event == "ping" or not data:
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise ProviderError(self.provider, "Anthropic sent a malformed stream event.",
                                "Check that baseUrl points at the Anthropic API.") from None
        kind = payload.get("type", event)
        if kind == "error":
            raise self._error(payload.get("error") or {})
        if kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            self.input_tokens = _tokens(usage)
            self.output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_start":
            yield from self._block_start(payload.get("index", 0), payload.get("content_block") or {})
        elif kind == "content_block_delta":
            yield from self._delta(payload.get("index", 0), payload.get("delta") or {})
        elif kind == "message_delta":
            self.stop_reason = (payload.get("delta") or {}).get("stop_reason") or self.stop_reason
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                self.output_tokens = int(usage["output_tokens"])
        elif kind == "message_stop":
            self.done = True

    def finish(self) -> Iterator[StreamEvent]:
        if not self.done:
            raise ProviderError(self.provider, "Anthropic closed the stream before message_stop.",
                                "Try again.", retryable=True)
        yield Usage(self.input_tokens, self.output_tokens)
        yield Finish(STOP_REASONS.get(self.stop_reason or "", "stop"))  # type: ignore[arg-type]

    def _block_start(self, index: int, block: dict[str, Any]) -> Iterator[StreamEvent]:
        if block.get("type") == "tool_use":
            self._tool_ids[index] = str(block.get("id", f"tool_{index}"))
            yield ToolCallDelta(self._tool_ids[index], block.get("name"), "")
        elif block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])

    def _delta(self, index: int, delta: dict[str, Any]) -> Iterator[StreamEvent]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            yield TextDelta(delta["text"])
        elif delta.get("type") == "input_json_delta":
            call_id = self._tool_ids.get(index, f"tool_{index}")
            yield ToolCallDelta(call_id, None, delta.get("partial_json", ""))

    def _error(self, error: dict[str, Any]) -> ProviderError:
        kind = str(error.get("type", "error"))
        message = str(error.get("message", "")).strip().splitlines()[0:1]
        detail = message[0][:300] if message else "no message"
        status = 529 if kind == "overloaded_error" else None
        return ProviderError(self.provider, f"Anthropic stream error: {detail} ({kind})",
                             "Try again shortly." if kind in RETRYABLE_ERROR_TYPES
                             else "Check the request.", status=status,
                             retryable=kind in RETRYABLE_ERROR_TYPES)


def _tokens(usage: dict[str, Any]) -> int:
    """Input tokens, counting prompt-cache reads and writes (they are part of the prompt)."""
    return sum(int(usage.get(key) or 0) for key in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
