"""The OpenAI dialect: `POST /v1/chat/completions` (streamed or not) and `GET /v1/models`.

Fields we do not use (`logit_bias`, ...) are accepted and ignored, as local servers do;
`user`, `prompt_cache_key` and vLLM's `cache_salt` only choose whose KV cache a request may
reuse (server.http.tenant); fields we cannot honour (`n` > 1, audio or file content) are a
400. `image_url` parts with `data:image/...;base64,` URLs go to a vision model as images
(core.generation.vision); http(s) URLs are a 400: the server never fetches from the network on a client's behalf. `tools`/`tool_choice`,
`role: tool` messages and `response_format` (json_schema, json_object) are honoured by
constrained decoding (core.answers.tools, core.answers.structured); calls come back as `tool_calls`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.events import TextDelta, ToolCallDelta
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
    openai_tool_calls,
    parse_body,
    remote_image_refused,
    rest_of,
    sse,
    tenant,
)

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 503: "server_error"}


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "image_url"]
    text: Optional[str] = None
    image_url: Union[dict[str, Any], str, None] = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[_ContentPart], None] = None
    tool_calls: Optional[list[dict[str, Any]]] = None
    tool_call_id: Optional[str] = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: Optional[str] = None
    messages: list[_Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=1)  # vLLM's extension; our CLI sends it to the service
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=0, le=2**31 - 1)
    stream: bool = False
    stream_options: Optional[_StreamOptions] = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Union[str, dict[str, Any], None] = None
    response_format: Optional[dict[str, Any]] = None
    cache_salt: Optional[str] = None  # vLLM's: requests share cached prefixes only per salt
    user: Optional[str] = None
    prompt_cache_key: Optional[str] = None


def error_body(status: int, kind: str, message: str, param: str | None,
               code: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, kind if status < 500 else "server_error")
    code = code or {401: "invalid_api_key", 403: "forbidden", 404: "model_not_found",
                    413: "request_too_large", 415: "unsupported_media_type",
                    422: "invalid_answer", 503: "overloaded"}.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


async def models(request: Request) -> Response:
    state = request.app.state
    try:
        check_api_key(request, state.api_key, allow_x_api_key=True)
    except ApiError as error:
        return error_response(error, error_body)
    served = state.pool.served_ids()
    served += getattr(state, "embeddings", None) and state.embeddings.ids or []
    data = [{"id": model_id, "object": "model", "created": 0, "owned_by": "agentic-onnx"}
            for model_id in served]
    return JSONResponse({"object": "list", "data": data})


async def chat_completions(request: Request) -> Response:
    state = request.app.state
    try:
        check_api_key(request, state.api_key, allow_x_api_key=False)
        body: ChatCompletionRequest = await parse_body(request, ChatCompletionRequest)
        job, chat = await admit(
            request, body, lambda routed, adapter: _prepare(body, state.pool, routed, adapter),
            "serve:openai", tenant(request, state.api_key, body.cache_salt, body.user,
                                   body.prompt_cache_key))
        first = await first_item(job, request)
    except ApiError as error:
        return error_response(error, error_body)
    except AgenticError as error:  # one of ours, from preparing the request: its own status
        return error_response(api_error(error), error_body)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventStream(_chunks(job, first, completion_id, include_usage), job,
                           answered_by(job))
    try:
        answer = await collect(job, request)
    except ApiError as error:
        return error_response(error, error_body)
    return finished(job, _completion(answer, completion_id), error_body, "completion",
                    "response_format" if chat.response_format else "tools")


def _prepare(body: ChatCompletionRequest, pool: Any, routed: bool = False,
             adapter: str | None = None) -> ChatRequest:
    """The request as the pool (or the router) takes it (on a worker thread: images decode,
    grammars compile)."""
    messages, options, images = _to_engine(body, pool if not routed else None)
    if routed:
        return ChatRequest.of(messages, options=options, images=images, model=body.model,
                              **_answer(body))
    check_vision(pool, body.model, images)
    return ChatRequest.of(messages, options=options, images=images, model=body.model,
                          adapter=adapter, **_answer(body))


def _to_engine(body: ChatCompletionRequest, pool: Any) -> tuple[list[dict[str, str]], Any, list[Any]]:
    from agentic_onnx.core.generation.options import GenerationOptions

    messages = []
    images: list[Any] = []
    for index, message in enumerate(body.messages):
        text = _content_text(message.content, f"messages.{index}.content", images)
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": text})
        if message.tool_calls:
            messages[-1]["tool_calls"] = message.tool_calls
        if message.tool_call_id:
            messages[-1]["tool_call_id"] = message.tool_call_id
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None and pool is not None and pool.ready:
        max_tokens = pool.worker_for(body.model).model.folder.context_length
    try:
        options = GenerationOptions(**{name: value for name, value in {
            "max_tokens": max_tokens, "temperature": body.temperature, "top_p": body.top_p,
            "top_k": body.top_k, "seed": body.seed, "stop": tuple(s for s in stops if s)}.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        raise ApiError(400, "invalid_request_error", f"{first['loc'][0]}: {first['msg']}",
                       param=str(first["loc"][0])) from None
    return messages, options, images


def _content_text(content: Union[str, list[_ContentPart], None], label: str,
                  images: list[Any]) -> str:
    """A message's text; each image part becomes core.generation.vision's marker where it stands, and its
    image joins `images`."""
    if content is None or isinstance(content, str):
        return content or ""
    from agentic_onnx.core.generation.vision import IMAGE_MARKER

    texts = []
    for index, part in enumerate(content):
        if part.type == "text":
            texts.append(part.text or "")
            continue
        images.append(_image(part.image_url, f"{label}.{index}.image_url"))
        texts.append(IMAGE_MARKER)
    return "".join(texts)


def _image(image_url: Union[dict[str, Any], str, None], label: str) -> Any:
    """`image_url.url`: a `data:image/...;base64,` URL; an http(s) URL is refused, not fetched."""
    url = str((image_url.get("url") if isinstance(image_url, dict) else image_url) or "")
    if url.lower().startswith(("http://", "https://")):
        raise remote_image_refused(label, "a data:image/png;base64,... URL")
    header, comma, data = url.partition(",")
    if not (header.lower().startswith("data:") and header.lower().endswith(";base64") and comma):
        raise ApiError(400, "invalid_request_error",
                       f"{label}: expected a data:image/...;base64,... URL.", param=label)
    return decode_image(data, label)


def _answer(body: ChatCompletionRequest) -> dict[str, Any]:
    """tools/tool_choice and response_format as ChatRequest fields; 400 when bad."""
    from agentic_onnx.core.answers.structured import SchemaError, json_mode, response_format
    from agentic_onnx.core.answers.tools import parse_tool_choice, parse_tools

    try:
        if body.tools:
            tools = parse_tools(body.tools, "tools")
            return {"tools": tools, "tool_choice": parse_tool_choice(body.tool_choice, tools)}
        kind = (body.response_format or {}).get("type", "text")
        if kind == "json_object":
            return {"response_format": json_mode()}
        if kind == "json_schema":
            spec = body.response_format.get("json_schema") or {}  # type: ignore[union-attr]
            fmt = response_format(spec.get("schema") or {"type": "object"})
            return {"response_format": fmt}
    except SchemaError as error:
        raise ApiError(400, "invalid_request_error", error.one_line(),
                       param="tools" if body.tools else "response_format") from None
    return {}


def _usage(answer: Answer) -> dict[str, Any]:
    prompt, completion = (answer.usage.prompt_tokens, answer.usage.completion_tokens) \
        if answer.usage else (0, 0)
    cached = answer.usage.cached_tokens if answer.usage else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _finish(answer: Answer) -> str:
    reason = answer.finish_reason or "stop"
    return reason if reason in ("length", "tool_calls") else "stop"


def _completion(answer: Answer, completion_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    calls = openai_tool_calls(answer)
    if calls:
        message.update(content=answer.text or None, tool_calls=calls)
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()),
        "model": answer.model, "system_fingerprint": None,
        "choices": [{"index": 0, "message": message,
                     "logprobs": None, "finish_reason": _finish(answer)}],
        "usage": _usage(answer),
    }


async def _chunks(job: Any, first: Any, completion_id: str,
                  include_usage: bool) -> AsyncIterator[str]:
    created = int(time.time())
    model_id = job.model_name

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data: dict[str, Any] = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": model_id, "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None
        return sse(data)

    yield chunk({"role": "assistant", "content": ""})
    call_index: dict[str, int] = {}
    answer: Answer | None = None
    try:
        async for item in rest_of(job, first):
            if isinstance(item, TextDelta):
                yield chunk({"content": item.text})
            elif isinstance(item, ToolCallDelta):
                yield chunk({"tool_calls": [_call_chunk(item, call_index)]})
            elif isinstance(item, Answer):
                answer = item
    except ApiError as error:
        yield sse(error_body(error.status, error.kind, error.message, None))
        return
    if answer is None:
        return
    if job.answer_error is not None:  # what was streamed is not what was asked: say so, no [DONE]
        error = api_error(job.answer_error)
        yield sse(error_body(error.status, error.kind, error.message, None))
        return
    yield chunk({}, _finish(answer))
    if include_usage:
        yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                   "model": model_id, "system_fingerprint": None, "choices": [],
                   "usage": _usage(answer)})
    yield "data: [DONE]\n\n"


def _call_chunk(delta: ToolCallDelta, call_index: dict[str, int]) -> dict[str, Any]:
    """One `delta.tool_calls` entry: a new call carries index, id, type and name."""
    if delta.id in call_index:
        return {"index": call_index[delta.id],
                "function": {"arguments": delta.arguments_json_fragment}}
    call_index[delta.id] = len(call_index)
    return {"index": call_index[delta.id], "id": delta.id, "type": "function",
            "function": {"name": delta.name or "", "arguments": delta.arguments_json_fragment}}
