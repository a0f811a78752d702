"""`agentic-onnx embed`: text embeddings from a local encoder, for shell pipelines.

Texts come from the arguments, or one per line of stdin. Plain output is one vector per line
(a JSON array, so `jq` and any JSON reader take it), in input order; `--json` prints one object
with the vectors, token usage and which inputs were truncated. Warnings go to stderr, so
`embed ... > vectors.jsonl` stays clean. onnxruntime and tokenizers load inside the command.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli.options import DebugOpt, ExecutionProviderOpt, JsonOpt, ThreadsOpt

DEFAULT_BATCH_SIZE = 32


def embed_command(
    texts: Annotated[Optional[list[str]], typer.Argument(metavar="TEXT...", help="Texts to embed. None: one text per line of stdin.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="MODEL", help="An embedding model: a catalog id of kind embedding (see `onnx models`), its alias, or a folder with an ONNX sentence-embedding export.")] = None,
    input_type: Annotated[str, typer.Option("--input-type", metavar="TYPE", help="document | query: which of the model's prefixes to put before each text (for models that use them).")] = "document",
    dimensions: Annotated[Optional[int], typer.Option("--dimensions", metavar="N", help="Cut the vectors to N components and renormalise (only sizes the model was trained for).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", help="Texts per forward pass.")] = DEFAULT_BATCH_SIZE,
    json_output: JsonOpt = False,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Embed texts with a local embedding model: one vector per line, or --json."""
    from agentic_onnx.cli import render
    from agentic_onnx.core.embeddings.engine import INPUT_TYPES, load_embedding_model
    from agentic_onnx.core.embeddings.resolve import resolve_embedding
    from agentic_onnx.core.errors import UsageError

    if input_type not in INPUT_TYPES:
        raise UsageError(f"Invalid value for --input-type: {input_type!r}.", "Use document or query.")
    if not 1 <= batch_size <= 4096:
        raise UsageError(f"Invalid value for --batch-size: {batch_size} is not between 1 and 4096.")
    inputs = _inputs(texts)
    folder = resolve_embedding(model)
    loaded = load_embedding_model(folder, execution_provider, threads)
    started = time.perf_counter()
    result = loaded.embed(inputs, input_type=input_type, dimensions=dimensions,
                          batch_size=batch_size)
    seconds = time.perf_counter() - started
    if (note := result.truncation_note()) is not None:
        render.warning(note)
    if json_output:
        render.print_json(_json(loaded, result, seconds))
        return
    out = sys.stdout
    for row in result.vectors:
        out.write(vector_text(row) + "\n")
    out.flush()


def _inputs(texts: Optional[list[str]]) -> list[str]:
    from agentic_onnx.core.errors import UsageError

    if texts:
        return list(texts)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("No text given.", "Pass texts as arguments, or pipe one text per line.")
    lines = sys.stdin.read().splitlines()
    if not lines:
        raise UsageError("No text given: stdin was empty.",
                         "Pipe one text per line, or pass texts as arguments.")
    return lines


def vector_text(row: Any) -> str:
    """A JSON array; 9 significant digits give back the exact float32."""
    return "[" + ",".join(f"{float(x):.9g}" for x in row) + "]"


def _json(loaded: Any, result: Any, seconds: float) -> dict[str, Any]:
    data = [{"index": i, "tokens": result.token_counts[i], "truncated": i in result.truncated,
             "embedding": [float(f"{float(x):.9g}") for x in row]}
            for i, row in enumerate(result.vectors)]
    return {"model": loaded.model_id, "dimension": int(result.vectors.shape[1]),
            "execution_provider": loaded.execution_provider, "max_tokens": result.max_tokens,
            "data": data, "truncated": result.truncated,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
            "seconds": round(seconds, 4)}
