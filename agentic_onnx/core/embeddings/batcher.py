"""Concurrent embedding requests share batches: one worker thread per served embedding model
takes every request waiting (up to `max_batch_texts` texts), runs them as one engine call per
input type, and hands each request its own rows.

A bounded queue in front (`max_queue` requests) turns overload into `QueueFullError` (HTTP 503
with Retry-After) instead of unbounded memory. No web framework here: the server awaits the
returned `concurrent.futures.Future`.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.core.embeddings.engine import (
    EmbeddingModel,
    EmbeddingResult,
    check_dimensions,
    load_embedding_model,
)
from agentic_onnx.core.embeddings.folder import EmbeddingFolder
from agentic_onnx.core.embeddings.pooling import shorten
from agentic_onnx.core.errors import AgenticError

DEFAULT_MAX_BATCH_TEXTS = 64


class EmbeddingQueueFullError(Exception):
    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("The embedding model's queue is full.")
        self.retry_after_s = retry_after_s


@dataclass
class _Request:
    texts: list[str]
    input_type: str | None
    dimensions: int | None
    future: Future = field(default_factory=Future)


class EmbeddingBatcher:
    """One served embedding model: load it, then embed requests in shared batches."""

    def __init__(self, folder: EmbeddingFolder, execution_provider: str = "auto",
                 threads: int | None = None, max_queue: int = 16,
                 max_batch_texts: int = DEFAULT_MAX_BATCH_TEXTS) -> None:
        self.folder = folder
        self.execution_provider = execution_provider
        self.threads = threads
        self.max_batch_texts = max_batch_texts
        self.model: EmbeddingModel | None = None
        self.batches_run = 0  # engine calls made; fewer than requests when batching happened
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max(1, max_queue))
        self._thread: threading.Thread | None = None

    @property
    def model_id(self) -> str:
        return self.folder.model_id

    def load(self, start: bool = True) -> None:
        """Load the model and (unless `start` is False: tests queue requests first) start the
        worker."""
        self.model = load_embedding_model(self.folder, self.execution_provider, self.threads)
        if start:
            self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name=f"embed-{self.model_id}",
                                        daemon=True)
        self._thread.start()

    def submit(self, texts: list[str], input_type: str | None = None,
               dimensions: int | None = None) -> Future:
        """Queue a request (raises `UsageError` for a size the model cannot give, and
        `EmbeddingQueueFullError` when the queue is full)."""
        assert self.model is not None, "load() first"
        check_dimensions(self.model.folder, dimensions)
        request = _Request(list(texts), input_type, dimensions)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise EmbeddingQueueFullError() from None
        return request.future

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            count = len(first.texts)
            while count < self.max_batch_texts:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
                count += len(more.texts)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        assert self.model is not None
        for input_type in dict.fromkeys(r.input_type for r in batch):
            group = [r for r in batch if r.input_type == input_type]
            texts = [text for r in group for text in r.texts]
            try:
                result = self.model.embed(texts, input_type=input_type)
                self.batches_run += 1
            except AgenticError as error:
                for request in group:
                    request.future.set_exception(error)
                continue
            start = 0
            for request in group:
                stop = start + len(request.texts)
                request.future.set_result(self._slice(result, start, stop, request.dimensions))
                start = stop

    def _slice(self, result: EmbeddingResult, start: int, stop: int,
               dimensions: int | None) -> EmbeddingResult:
        vectors: Any = result.vectors[start:stop]
        if dimensions and dimensions != vectors.shape[1]:
            vectors = shorten(vectors, dimensions, self.folder.normalize)
        return EmbeddingResult(vectors, result.token_counts[start:stop],
                               [i - start for i in result.truncated if start <= i < stop],
                               result.max_tokens)
