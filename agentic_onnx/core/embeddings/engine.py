"""Run an embedding model: tokenize (with truncation at the model's limit, reported), pad a batch
with an attention mask, run the encoder on ONNX Runtime, pool, normalise, and cut to a smaller
size when asked.

Inputs are sorted by length before batching so each batch pads as little as possible; mean
pooling masks the padding out, so a text's vector does not depend on its neighbours. A loaded
model is cached per (folder, execution provider, threads), like the generation engine's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.core.embeddings.folder import EmbeddingFolder, with_dimension
from agentic_onnx.core.embeddings.pooling import l2_normalize, pool, shorten
from agentic_onnx.core.errors import (
    ExecutionProviderUnavailableError,
    GenerationError,
    UsageError,
)

DEFAULT_BATCH_SIZE = 32
INPUT_TYPES = ("document", "query")
EP_CHOICES = ("auto", "cpu", "cuda", "dml")
_ORT_PROVIDERS = {"cuda": "CUDAExecutionProvider", "dml": "DmlExecutionProvider",
                  "cpu": "CPUExecutionProvider"}
_LOADED: dict[tuple[EmbeddingFolder, str, int], EmbeddingModel] = {}
_LOCK = threading.Lock()


@dataclass
class EmbeddingResult:
    """One call's vectors (in input order) and what it cost."""

    vectors: Any  # numpy float32 [inputs, dimension]
    token_counts: list[int]  # per input, after truncation, special tokens included
    truncated: list[int] = field(default_factory=list)  # indices of inputs cut at max_tokens
    max_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return sum(self.token_counts)

    def truncation_note(self) -> str | None:
        """One sentence naming the inputs that were cut, or None."""
        if not self.truncated:
            return None
        shown = ", ".join(str(i + 1) for i in self.truncated[:10])
        more = f" and {len(self.truncated) - 10} more" if len(self.truncated) > 10 else ""
        return (f"Truncated to the model's {self.max_tokens}-token limit: input "
                f"{shown}{more}; the rest of each was not embedded.")


class EmbeddingModel:
    """A loaded encoder. `embed` is thread-safe: ONNX Runtime sessions allow concurrent runs."""

    def __init__(self, folder: EmbeddingFolder, session: Any, tokenizer: Any, provider: str,
                 threads: int, load_s: float) -> None:
        self.folder = folder
        self.session = session
        self.tokenizer = tokenizer
        self.execution_provider = provider
        self.threads = threads
        self.load_s = load_s
        self._inputs = {i.name for i in session.get_inputs()}
        self._output = _hidden_output(session)
        self._pad_id = _pad_id(tokenizer)

    @property
    def model_id(self) -> str:
        return self.folder.model_id

    @property
    def dimension(self) -> int:
        return int(self.folder.dimension or 0)

    def embed(self, texts: Sequence[str], *, input_type: str | None = None,
              dimensions: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> EmbeddingResult:
        """Vectors for `texts`, in order. `input_type` picks the model's query or document
        prefix; `dimensions` cuts Matryoshka models to a smaller size."""
        import numpy as np

        check_dimensions(self.folder, dimensions)
        if batch_size < 1:
            raise UsageError(f"The batch size must be at least 1, not {batch_size}.")
        prefix = self.folder.prefix(input_type)
        encodings = self.tokenizer.encode_batch([prefix + text for text in texts])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            vectors[chunk] = self._run([encodings[i] for i in chunk])
        if dimensions and dimensions != self.dimension:
            vectors = shorten(vectors, dimensions, self.folder.normalize)
        truncated = [i for i, e in enumerate(encodings) if e.overflowing]
        return EmbeddingResult(vectors, [len(e.ids) for e in encodings], truncated,
                               self.folder.max_tokens)

    def _run(self, encodings: list[Any]) -> Any:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = encoding.ids, 1, encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        try:
            (output,) = self.session.run([self._output], {k: v for k, v in feeds.items()
                                                           if k in self._inputs})
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
            raise GenerationError(f"The embedding model failed: {error}") from error
        vectors = output if output.ndim == 2 else pool(output, mask, self.folder.pooling)
        return l2_normalize(vectors) if self.folder.normalize else vectors


def check_dimensions(folder: EmbeddingFolder, dimensions: int | None) -> None:
    """`dimensions` must be the full size or one the model was trained to be cut to."""
    if dimensions is None or dimensions == folder.dimension:
        return
    if dimensions in folder.dimensions:
        return
    if not folder.dimensions:
        raise UsageError(f"{folder.model_id} does not support other dimensions: its vectors have "
                         f"{folder.dimension}.", "Leave out dimensions.")
    sizes = ", ".join(str(d) for d in folder.allowed_dimensions())
    raise UsageError(f"{folder.model_id} cannot give {dimensions} dimensions.",
                     f"Use one of: {sizes}.")


def load_embedding_model(folder: EmbeddingFolder, execution_provider: str = "auto",
                         threads: int | None = None) -> EmbeddingModel:
    """Load (or reuse) the encoder on the chosen execution provider."""
    from agentic_onnx.core.machine.hardware import default_threads

    threads = threads or default_threads()
    provider = choose_provider(execution_provider)
    key = (folder, provider, threads)  # the facts too: the same graph may pool two ways
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _create(folder, provider, threads)
        return _LOADED[key]


def choose_provider(requested: str) -> str:
    """auto: CUDA > DirectML > CPU among what this onnxruntime offers; an explicit EP that is
    missing is an error (never a silent CPU run), as for generation."""
    import onnxruntime

    requested = (requested or "auto").lower()
    if requested not in EP_CHOICES:  # a typo is a usage error, as for generation
        raise UsageError(f"Embedding models run on {', '.join(EP_CHOICES[1:])}, not "
                         f"{requested!r}.", "Use --execution-provider auto.")
    available = set(onnxruntime.get_available_providers())
    if requested == "auto":
        return next(ep for ep in ("cuda", "dml", "cpu")
                    if ep == "cpu" or _ORT_PROVIDERS[ep] in available)
    if _ORT_PROVIDERS[requested] not in available:
        package = "onnxruntime-gpu" if requested == "cuda" else "onnxruntime-directml"
        raise ExecutionProviderUnavailableError(
            f"This onnxruntime cannot use {requested.upper()} for embedding models.",
            f"Install {package} in place of onnxruntime (see docs/embeddings.md).")
    return requested


def _create(folder: EmbeddingFolder, provider: str, threads: int) -> EmbeddingModel:
    import onnxruntime
    from tokenizers import Tokenizer

    started = time.perf_counter()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    providers = [_ORT_PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
    try:
        session = onnxruntime.InferenceSession(str(folder.graph_path), options, providers=providers)
        tokenizer = Tokenizer.from_file(str(folder.tokenizer_path))
    except Exception as error:  # noqa: BLE001
        raise GenerationError(f"Could not load the embedding model {folder.model_id}: {error}",
                              "Re-download it, or check that the folder is an ONNX encoder.") from error
    tokenizer.no_padding()  # we pad ourselves, per batch
    tokenizer.enable_truncation(max_length=folder.max_tokens)
    output = _hidden_output(session)
    width = next(o.shape[-1] for o in session.get_outputs() if o.name == output)
    if isinstance(width, int) and folder.dimension not in (None, width):
        raise GenerationError(f"{folder.model_id}'s encoder gives {width}-wide vectors, not the "
                              f"{folder.dimension} its description says.", "Re-download it.")
    if isinstance(width, int):
        folder = with_dimension(folder, width)
    return EmbeddingModel(folder, session, tokenizer, provider, threads,
                          time.perf_counter() - started)


def _hidden_output(session: Any) -> str:
    """The token states (`last_hidden_state`), or an already pooled `sentence_embedding`."""
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    for name in ("last_hidden_state", "token_embeddings", "sentence_embedding"):
        if name in names:
            return name
    return next((o.name for o in outputs if len(o.shape) == 3), names[0])


def _pad_id(tokenizer: Any) -> int:
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0
