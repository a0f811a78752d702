"""`POST /v1/embeddings` in the OpenAI format, over the served embedding models.

`input` is a string or a list of strings (token arrays are a 400: clients that send them
tokenise for OpenAI's models, not ours); `encoding_format` float or base64 (little-endian
float32, what the OpenAI SDK asks for by default); `dimensions` where the model was trained to
be cut (Matryoshka); `input_type` (`query` or `document`, default document) picks the model's
prefix, an extension in the spirit of other embedding APIs. Requests from concurrent clients
share batches (core/embeddings/batcher.py). Auth and errors are the chat endpoints'.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentic_onnx.core.embeddings.batcher import EmbeddingBatcher, EmbeddingQueueFullError
from agentic_onnx.core.errors import AgenticError, UsageError
from agentic_onnx.server.http import ApiError, check_api_key, error_response, parse_body
from agentic_onnx.server.openai_api import error_body

MAX_INPUTS = 2048  # OpenAI's own limit per request


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: Optional[str] = None
    input: Union[str, list[Any]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)
    input_type: Optional[Literal["query", "document"]] = None


class EmbeddingModels:
    """The served embedding models, by id; the first answers names it does not know."""

    def __init__(self, batchers: list[EmbeddingBatcher]) -> None:
        self.batchers = {b.model_id: b for b in batchers}
        self.ready = False

    @property
    def ids(self) -> list[str]:
        return list(self.batchers)

    def load(self) -> AgenticError | None:
        """Load every model; the first error, or None."""
        try:
            for batcher in self.batchers.values():
                batcher.load()
        except AgenticError as error:
            return error
        self.ready = True
        return None

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.stop()


async def embeddings(request: Request) -> Response:
    state = request.app.state
    try:
        check_api_key(request, state.api_key, allow_x_api_key=False)
        body: EmbeddingRequest = await parse_body(request, EmbeddingRequest)
        texts = _texts(body.input)
        batcher = _batcher(state, body.model)
        result = await asyncio.wrap_future(_submit(batcher, texts, body))
    except ApiError as error:
        return error_response(error, error_body)
    except AgenticError as error:
        return error_response(ApiError(500, "server_error", error.one_line()), error_body)
    data = [{"object": "embedding", "index": i, "embedding": _encode(row, body.encoding_format)}
            for i, row in enumerate(result.vectors)]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"object": "list", "data": data, "model": batcher.model_id,
                         "usage": usage, "truncated_inputs": result.truncated})


async def no_chat_model(request: Request) -> Response:
    """Chat routes of a server started with embedding models only."""
    try:
        check_api_key(request, request.app.state.api_key, allow_x_api_key=True)
    except ApiError as error:
        return error_response(error, error_body)
    return error_response(ApiError(400, "invalid_request_error", "This server serves embedding "
                                   "models only; start serve with a chat --model too.",
                                   param="model"), error_body)


def _texts(value: Union[str, list[Any]]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise ApiError(400, "invalid_request_error", "input: the list is empty.", param="input")
    if len(value) > MAX_INPUTS:
        raise ApiError(400, "invalid_request_error", f"input: {len(value)} items; at most "
                       f"{MAX_INPUTS} per request.", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(400, "invalid_request_error", f"input.{index}: expected a string "
                           "(token arrays are not supported).", param=f"input.{index}")
    return value


def _batcher(state: Any, name: str | None) -> EmbeddingBatcher:
    models: EmbeddingModels | None = getattr(state, "embeddings", None)
    chat_ids = {spec.model_id for spec in state.pool.specs}
    if name and name in chat_ids and not (models and name in models.batchers):
        raise ApiError(400, "invalid_request_error", f"model: {name!r} is a chat model, not an "
                       "embedding model.", param="model")
    if models is None or not models.batchers:
        raise ApiError(400, "invalid_request_error", "This server serves no embedding model; "
                       "start serve with --model and an embedding model (see `onnx models`).",
                       param="model")
    if name and name not in models.batchers:  # never answered by another model
        raise ApiError(404, "not_found_error", f"The model {name!r} is not served here; served: "
                       f"{', '.join(models.batchers)}.", param="model")
    if not models.ready:
        raise ApiError(503, "overloaded_error", "The model is still loading; retry shortly.",
                       retry_after_s=1)
    return models.batchers.get(name or "") or next(iter(models.batchers.values()))


def _submit(batcher: EmbeddingBatcher, texts: list[str], body: EmbeddingRequest) -> Any:
    try:
        return batcher.submit(texts, body.input_type, body.dimensions)
    except UsageError as error:
        raise ApiError(400, "invalid_request_error", f"dimensions: {error.one_line()}",
                       param="dimensions") from None
    except EmbeddingQueueFullError as error:
        raise ApiError(503, "overloaded_error", "The model's queue is full; retry after the "
                       "time in Retry-After.", retry_after_s=error.retry_after_s) from None


def _encode(row: Any, encoding_format: str) -> Union[list[float], str]:
    if encoding_format == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in row]
