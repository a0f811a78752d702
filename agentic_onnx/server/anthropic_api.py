"""The Anthropic dialect: `POST /v1/messages`, streamed or not, so the Anthropic SDK (and agents
built on it) can run on a local model with `ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`.

The stream is Anthropic's own event sequence: message_start, content_block_start, ping,
content_block_delta..., content_block_stop, message_delta (stop_reason, usage), message_stop.
Text, `tool_use` and `tool_result` blocks; `image` blocks with base64 sources go to a vision
model as images (core.generation.vision), `url` sources are a 400 (the server never fetches from the
network on a client's behalf); documents are a 400. With `tools`, a
reply may be a call (core.answers.tools: constrained decoding), sent as a `tool_use` block (its input
as one input_json_delta) with stop_reason `tool_use`. `metadata.user_id` and vLLM's `cache_salt`
choose whose KV cache a request may reuse (server.http.tenant).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.events import FirstToken, TextDelta, ToolCallDelta
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response as Answer
from agentic_onnx.server.http import (
    ApiError,
    EventStream,
    admit,
    answered_by,
    api_error,
    check_api_key,
    check_vision,
    collect,
    decode_image,
    error_response,
    finished,
    first_item,
    parse_body,
    remote_image_refused,
    rest_of,
    sse,
    tenant,
)


class _TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control and friends are ignored
    type: Literal["text"]
    text: str


class _Block(BaseModel):
    """A message content block: text, an image (user), a tool_use (assistant) or a tool_result."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "tool_use", "tool_result", "image"]
    text: Optional[str] = None
    source: Optional[dict[str, Any]] = None
    id: Optional[str] = None
    name: Optional[str] = None
    input: Optional[dict[str, Any]] = None
    tool_use_id: Optional[str] = None
    content: Union[str, list[dict[str, Any]], None] = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant"]
    content: Union[str, list[_Block]]


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_id: Optional[str] = None


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[_Message] = Field(min_length=1)
    system: Union[str, list[_TextBlock], None] = None
    temperature: Optional[float] = Field(None, ge=0.0, le=1.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=1)
    stop_sequences: Optional[list[str]] = None
    stream: bool = False
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Optional[dict[str, Any]] = None
    metadata: Optional[_Metadata] = None
    cache_salt: Optional[str] = None  # as vLLM's: cached prefixes are shared only per salt


def error_body(status: int, kind: str, message: str, param: str | None,
               code: str | None = None) -> dict[str, Any]:  # Anthropic's errors have no code
    if status >= 500 and status != 503:
        kind = "api_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


async def messages(request: Request) -> Response:
    state = request.app.state
    try:
        check_api_key(request, state.api_key, allow_x_api_key=True)
        body: MessagesRequest = await parse_body(request, MessagesRequest)
        user = body.metadata.user_id if body.metadata else None
        job, _ = await admit(
            request, body, lambda routed, adapter: _prepare(body, state.pool, routed, adapter),
            "serve:anthropic", tenant(request, state.api_key, body.cache_salt, user))
        first = await first_item(job, request)
    except ApiError as error:
        return error_response(error, error_body)
    except AgenticError as error:  # one of ours, from preparing the request: its own status
        return error_response(api_error(error), error_body)
    message = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant",
               "model": job.model_name}
    if body.stream:
        return EventStream(_events(job, first, message, eager_text=not body.tools), job,
                           answered_by(job))
    try:
        answer = await collect(job, request)
    except ApiError as error:
        return error_response(error, error_body)
    message["model"] = answer.model or message["model"]
    uses = _tool_uses(answer)
    content = ([{"type": "text", "text": answer.text}] if answer.text or not uses else []) + uses
    stop_reason, stop_sequence = _stop(answer)
    reply = {**message, "content": content, "stop_reason": stop_reason,
             "stop_sequence": stop_sequence, "usage": _usage(answer)}
    return finished(job, reply, error_body, "message")


def _prepare(body: MessagesRequest, pool: Any, routed: bool = False,
             adapter: str | None = None) -> ChatRequest:
    """The request as the pool (or the router) takes it (on a worker thread: images decode,
    grammars compile)."""
    chat, options, images = _to_engine(body)
    if routed:
        return ChatRequest.of(chat, options=options, images=images, model=body.model,
                              **_answer(body))
    check_vision(pool, body.model, images)
    return ChatRequest.of(chat, options=options, images=images, model=body.model,
                          adapter=adapter, **_answer(body))


def _text(content: Union[str, list[Any], None]) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(block.text or "" for block in content if block.type == "text")


def _turns(message: _Message, label: str, images: list[Any]) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI-shaped turns (the engine's shape): tool_result blocks
    become `tool` turns, tool_use blocks an assistant turn's `tool_calls`, image blocks
    core.generation.vision's marker where they stand (their images join `images`)."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    turns: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block.content)}
        for block in message.content if block.type == "tool_result"]
    text = _text_and_images(message.content, label, images)
    uses = [block for block in message.content if block.type == "tool_use"]
    if uses:
        turns.append({"role": message.role, "content": text, "tool_calls": [
            {"id": block.id, "type": "function",
             "function": {"name": block.name, "arguments": json.dumps(block.input or {})}}
            for block in uses]})
    elif text or not turns:
        turns.append({"role": message.role, "content": text})
    return turns


def _text_and_images(blocks: list[_Block], label: str, images: list[Any]) -> str:
    from agentic_onnx.core.generation.vision import IMAGE_MARKER

    texts = []
    for index, block in enumerate(blocks):
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "image":
            images.append(_image(block.source or {}, f"{label}.{index}.source"))
            texts.append(IMAGE_MARKER)
    return "".join(texts)


def _image(source: dict[str, Any], label: str) -> Any:
    """A base64 `source`; a `url` source is refused, not fetched."""
    kind = source.get("type")
    if kind == "url":
        raise remote_image_refused(label, 'a {"type": "base64", "media_type", "data"} source')
    if kind != "base64" or not source.get("data"):
        raise ApiError(400, "invalid_request_error",
                       f"{label}: expected a base64 source with media_type and data.")
    return decode_image(source["data"], label)


def _result_text(content: Union[str, list[dict[str, Any]], None]) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def _answer(body: MessagesRequest) -> dict[str, Any]:
    """Anthropic tools/tool_choice as ChatRequest fields; 400 when they are bad."""
    if not body.tools:
        return {}
    from agentic_onnx.core.answers.structured import SchemaError
    from agentic_onnx.core.answers.tools import parse_tool_choice, parse_tools

    functions = [{"type": "function", "function": {
        "name": tool.get("name"), "description": tool.get("description") or "",
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}}
        if tool.get("type") in (None, "custom") else tool for tool in body.tools]
    try:
        tools = parse_tools(functions, "tools")
        return {"tools": tools, "tool_choice": parse_tool_choice(body.tool_choice, tools)}
    except SchemaError as error:
        raise ApiError(400, "invalid_request_error", error.one_line()) from None


def _tool_uses(answer: Answer) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": call["id"], "name": call["name"],
             "input": _input(call["arguments"])} for call in answer.tool_calls]


def _input(arguments: str) -> Any:  # noqa: ANN401
    """A call's input object; arguments that are not a JSON object (a routed cloud model's, which
    the answer check then reports) are kept as text rather than lost."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_unparsed_arguments": arguments}
    return value if isinstance(value, dict) else {"_unparsed_arguments": arguments}


def _to_engine(body: MessagesRequest) -> tuple[list[dict[str, Any]], Any, list[Any]]:
    from agentic_onnx.core.generation.options import GenerationOptions

    images: list[Any] = []
    chat = [{"role": "system", "content": _text(body.system)}] if _text(body.system) else []
    chat += [turn for index, m in enumerate(body.messages)
             for turn in _turns(m, f"messages.{index}.content", images)]
    values = {"max_tokens": body.max_tokens, "temperature": body.temperature,
              "top_p": body.top_p, "top_k": body.top_k,
              "stop": tuple(s for s in body.stop_sequences or [] if s)}
    try:
        options = GenerationOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        raise ApiError(400, "invalid_request_error", f"{first['loc'][0]}: {first['msg']}") from None
    return chat, options, images


def _stop(answer: Answer) -> tuple[str, str | None]:
    if answer.stop_sequence is not None:
        return "stop_sequence", answer.stop_sequence
    reason = answer.finish_reason or "stop"
    return {"length": "max_tokens", "tool_calls": "tool_use"}.get(reason, "end_turn"), None


def _usage(answer: Answer | None, first: Any = None) -> dict[str, int]:
    """Anthropic's usage: the prompt split into what was read from the cache and the rest.
    Before the answer (message_start), the counts the stream's FirstToken carried."""
    if answer is not None and answer.usage is not None:
        prompt, cached = answer.usage.prompt_tokens, answer.usage.cached_tokens
        output = answer.usage.completion_tokens
    elif isinstance(first, FirstToken):
        prompt, cached, output = first.prompt_tokens, first.cached_tokens, 0
    else:
        prompt, cached, output = 0, 0, 0
    return {"input_tokens": prompt - cached, "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0, "output_tokens": output}


async def _events(job: Any, first: Any, message: dict[str, Any],
                  eager_text: bool = True) -> AsyncIterator[str]:
    """The stream. Without tools the text block opens at once (as before); with tools blocks
    open as content arrives, so a reply that is only a call is only a tool_use block."""
    yield sse({"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": _usage(None, first)}}, "message_start")
    blocks = _Blocks()
    for event in blocks.text(None) if eager_text else []:
        yield event
    yield sse({"type": "ping"}, "ping")
    answer: Answer | None = None
    try:
        async for item in rest_of(job, first):
            if isinstance(item, TextDelta):
                for event in blocks.text(item.text):
                    yield event
            elif isinstance(item, ToolCallDelta):
                for event in blocks.tool_call(item):
                    yield event
            elif isinstance(item, Answer):
                answer = item
    except ApiError as error:
        yield sse(error_body(error.status, error.kind, error.message, None), "error")
        return
    if answer is None:
        return
    if job.answer_error is not None:  # what was streamed is not what was asked: say so
        error = api_error(job.answer_error)
        yield sse(error_body(error.status, error.kind, error.message, None), "error")
        return
    stop_reason, stop_sequence = _stop(answer)
    for event in blocks.close():
        yield event
    yield sse({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
               "usage": {"output_tokens": _usage(answer)["output_tokens"]}}, "message_delta")
    yield sse({"type": "message_stop"}, "message_stop")


class _Blocks:
    """Content block bookkeeping for the stream: one open block at a time, numbered."""

    def __init__(self) -> None:
        self.index, self.open_kind = -1, None
        self.calls: dict[str, int] = {}

    def text(self, text: str | None) -> list[str]:
        events = [] if self.open_kind == "text" else \
            self._stop() + self._start({"type": "text", "text": ""})
        if text:
            events.append(sse({"type": "content_block_delta", "index": self.index,
                               "delta": {"type": "text_delta", "text": text}},
                              "content_block_delta"))
        return events

    def tool_call(self, delta: ToolCallDelta) -> list[str]:
        events: list[str] = []
        if delta.id not in self.calls:
            events = self._stop() + self._start({"type": "tool_use", "id": delta.id,
                                                 "name": delta.name, "input": {}})
            self.calls[delta.id] = self.index
        if delta.arguments_json_fragment:
            events.append(sse({"type": "content_block_delta", "index": self.calls[delta.id],
                               "delta": {"type": "input_json_delta",
                                         "partial_json": delta.arguments_json_fragment}},
                              "content_block_delta"))
        return events

    def close(self) -> list[str]:
        events = self._start({"type": "text", "text": ""}) if self.index < 0 else []
        return events + self._stop()

    def _start(self, block: dict[str, Any]) -> list[str]:
        self.index, self.open_kind = self.index + 1, block["type"]
        return [sse({"type": "content_block_start", "index": self.index,
                     "content_block": block}, "content_block_start")]

    def _stop(self) -> list[str]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [sse({"type": "content_block_stop", "index": self.index}, "content_block_stop")]
