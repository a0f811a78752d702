"""Anthropic's Messages API, streamed (https://docs.anthropic.com/en/api/messages-streaming).

Events: message_start (input tokens), content_block_start (text or tool_use), content_block_delta
(text_delta, input_json_delta), content_block_stop, message_delta (stop_reason, output tokens),
message_stop, ping, error (e.g. overloaded_error, which is retryable like HTTP 529).

Tools: OpenAI-format tools become Anthropic tools (`input_schema`), `tool_choice` auto/none/
required/named becomes auto/none/any/tool, assistant `tool_calls` become `tool_use` blocks and
`role: tool` results `tool_result` blocks. A `--schema` becomes one forced tool whose input is
the answer: its input_json deltas are streamed as text, and its tool_use stop is a plain stop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import UsageError
from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.answers.tool_prompt import message_text
from agentic_onnx.router.errors import MissingKeyError, ProviderError
from agentic_onnx.router.providers.base import (
    Provider,
    refuse_images,
    system_and_turns,
)
from agentic_onnx.router.providers.http import HttpTarget, make_client, sse_events

API_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "tool_use": "tool_calls"}
RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicProvider(Provider):
    kind = "anthropic"
    supports_tools = True
    needs_key = True
    key_env_var = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    default_models = {"default": "claude-sonnet-4-5", "fast": "claude-haiku-4-5",
                      "advanced": "claude-opus-4-1"}

    def __init__(self, name: str, base_url: str, api_key: str | None, key_env_var: str,
                 timeout_s: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(name, local=False)
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._target = HttpTarget(name, "Anthropic", key_env_var)
        self._timeout_s = timeout_s
        self._headers = dict(headers or {})
        self._client: Any = None

    @classmethod
    def from_config(cls, loaded: Any, name: str, entry: Any,
                    **local_settings: Any) -> AnthropicProvider:
        return cls(name, entry.urls(cls.kind)[0], loaded.api_key(name),
                   cls.key_env_var_for(loaded, name) or "ANTHROPIC_API_KEY",
                   entry.timeout / 1000, entry.headers)

    def prepare(self, request: ChatRequest) -> None:
        refuse_images(self.name, request)
        if not self._api_key:
            raise MissingKeyError(self.name, self._target.key_env_var or "ANTHROPIC_API_KEY")
        if self._client is None:
            self._client = make_client(self._timeout_s)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.prepare(request)
        headers = {"x-api-key": self._api_key or "", "anthropic-version": API_VERSION,
                   **self._headers}
        parser = _MessageStream(self.name, answer_tool=_answer_tool_name(request))
        events = sse_events(self._client, self._target, f"{self._base_url}/v1/messages",
                            headers, self._payload(request))
        with closing(events):
            for sse in events:
                yield from parser.feed(sse.event, sse.data)
                if parser.done:
                    break
        yield from parser.finish()

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        system, turns = system_and_turns(request.messages)
        options, chosen = request.options, request.options.model_fields_set
        payload: dict[str, Any] = {"model": request.model, "max_tokens": options.max_tokens,
                                   "messages": anthropic_messages(turns), "stream": True}
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
        fmt = request.response_format
        if fmt is not None:
            payload["tools"] = [{"name": fmt.name, "input_schema": _object_schema(fmt),
                                 "description": "Answer by calling this tool: its input is "
                                                "the answer."}]
            payload["tool_choice"] = {"type": "tool", "name": fmt.name}
        elif request.tools:
            payload["tools"] = [anthropic_tool(tool) for tool in request.openai_tools()]
            if request.tool_choice is not None:
                payload["tool_choice"] = anthropic_tool_choice(request.tool_choice)
        return payload


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool (an Anthropic tool is passed as it is)."""
    function = tool.get("function")
    if not isinstance(function, dict):
        return dict(tool)
    result = {"name": function["name"],
              "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        result["description"] = function["description"]
    return result


def anthropic_tool_choice(choice: Any) -> dict[str, Any]:
    """core.answers.tools.ToolChoice -> Anthropic's tool_choice."""
    if choice.mode == "named":
        return {"type": "tool", "name": choice.name}
    return {"type": {"required": "any"}.get(choice.mode, choice.mode)}


def anthropic_messages(turns: list[Any]) -> list[Any]:
    """OpenAI-shaped turns as Anthropic messages: assistant tool_calls -> tool_use blocks, a run
    of `tool` results -> one user message of tool_result blocks. Other turns pass unchanged."""
    messages: list[Any] = []
    for turn in turns:
        if turn.get("role") == "tool":
            block = {"type": "tool_result", "tool_use_id": turn.get("tool_call_id"),
                     "content": message_text(turn.get("content"))}
            last = messages[-1] if messages else None
            if last and last.get("role") == "user" and isinstance(last.get("content"), list) \
                    and all(part.get("type") == "tool_result" for part in last["content"]):
                last["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        elif turn.get("role") == "assistant" and turn.get("tool_calls"):
            text = message_text(turn.get("content"))
            blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            blocks += [{"type": "tool_use", "id": call.get("id"),
                        "name": (call.get("function") or {}).get("name"),
                        "input": _arguments((call.get("function") or {}).get("arguments"))}
                       for call in turn["tool_calls"]]
            messages.append({"role": "assistant", "content": blocks})
        else:
            messages.append(turn)
    return messages


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments or "{}")
        except ValueError:
            return {}
    return arguments or {}


def _answer_tool_name(request: ChatRequest) -> str | None:
    return request.response_format.name if request.response_format is not None else None


def _object_schema(fmt: Any) -> dict[str, Any]:
    """Anthropic tool inputs are objects: a schema for anything else cannot be forced."""
    schema = fmt.cloud_schema()
    if schema.get("type", "object") != "object":
        raise UsageError("Anthropic can only be asked for a JSON object (--schema with "
                         f"\"type\": \"object\"), not {schema.get('type')!r}.",
                         "Wrap the value in an object schema, or use another provider.")
    return {"type": "object", **schema}


class _MessageStream:
    """Turns Anthropic's SSE events into our events; keeps the usage and the stop reason."""

    def __init__(self, provider: str, answer_tool: str | None = None) -> None:
        self.provider = provider
        self.answer_tool = answer_tool  # the forced tool of a --schema request: its input is text
        self._answer_blocks: set[int] = set()
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
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
            delta = payload.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            sequence = delta.get("stop_sequence")
            self.stop_sequence = sequence if isinstance(sequence, str) else self.stop_sequence
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
        reason = STOP_REASONS.get(self.stop_reason or "", "stop")
        if reason == "tool_calls" and self._answer_blocks:
            reason = "stop"  # the forced answer tool: the answer is complete
        yield Finish(reason, stop_sequence=self.stop_sequence if reason == "stop" else None)  # type: ignore[arg-type]

    def _block_start(self, index: int, block: dict[str, Any]) -> Iterator[StreamEvent]:
        if block.get("type") == "tool_use" and self.answer_tool is not None \
                and block.get("name") == self.answer_tool:
            self._answer_blocks.add(index)
        elif block.get("type") == "tool_use":
            self._tool_ids[index] = str(block.get("id", f"tool_{index}"))
            yield ToolCallDelta(self._tool_ids[index], block.get("name"), "")
        elif block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])

    def _delta(self, index: int, delta: dict[str, Any]) -> Iterator[StreamEvent]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            yield TextDelta(delta["text"])
        elif delta.get("type") == "input_json_delta" and index in self._answer_blocks:
            if delta.get("partial_json"):
                yield TextDelta(delta["partial_json"])
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
