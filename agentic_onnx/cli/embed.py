"""`agentic-onnx embed`: text embeddings from a local encoder (or, with `--provider`, an
OpenAI-compatible provider of the router: router/embeddings.py), for shell pipelines.

Texts come from the arguments, or one per line of stdin. Plain output is one vector per line
(a JSON array, so `jq` and any JSON reader take it), in input order; `--json` prints one object
with the vectors, token usage and which inputs were truncated. Warnings go to stderr, so
`embed ... > vectors.jsonl` stays clean. onnxruntime and tokenizers load inside the command.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from agentic_onnx.cli import output
from agentic_onnx.cli.options import ExecutionProviderOpt, JsonOpt, ThreadsOpt
from agentic_onnx.cli.router import ConfigOpt, LocalOnlyOpt, PrivacyOpt

DEFAULT_BATCH_SIZE = 32


def embed_command(
    texts: Annotated[Optional[list[str]], typer.Argument(metavar="TEXT...", help="Texts to embed. None: one text per line of stdin.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="MODEL", help="An embedding model: a catalog id of kind embedding (see `onnx models`), its alias, or a folder with an ONNX sentence-embedding export. With --provider: the server's model (default: the provider's models.embedding).")] = None,
    provider: Annotated[Optional[str], typer.Option("--provider", "-p", metavar="NAME", help="onnx (local, the default), or an OpenAI-compatible provider from the config (openai type, ollama, openrouter): its /embeddings.")] = None,
    input_type: Annotated[str, typer.Option("--input-type", metavar="TYPE", help="document | query: which of the model's prefixes to put before each text (for models that use them).")] = "document",
    dimensions: Annotated[Optional[int], typer.Option("--dimensions", metavar="N", help="Cut the vectors to N components and renormalise (only sizes the model was trained for).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", help="Texts per forward pass.")] = DEFAULT_BATCH_SIZE,
    json_output: JsonOpt = False,
    execution_provider: ExecutionProviderOpt = "auto",
    threads: ThreadsOpt = None,
    privacy: PrivacyOpt = None,
    local_only: LocalOnlyOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Embed texts with a local embedding model (or a provider's /embeddings): one vector per line, or --json."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.embeddings import route_embeddings

    if not 1 <= batch_size <= 4096:
        raise UsageError(f"Invalid value for --batch-size: {batch_size} is not between 1 and 4096.")
    out, inputs = output.current(), _inputs(texts)
    run = route_embeddings(inputs, provider=provider, model=model, privacy=privacy,
                           local_only=local_only, config_path=config, input_type=input_type,
                           dimensions=dimensions, on_notice=out.warning,
                           execution_provider=execution_provider, threads=threads,
                           batch_size=batch_size)
    if run.result is not None and (note := run.result.truncation_note()) is not None:
        out.warning(note)
    out.result(lambda: _json(run) if run.result is not None else _provider_json(run),
               lambda out, _: out.text("".join(vector_text(row) + "\n" for row in run.vectors)))


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


def _json(run: Any) -> dict[str, Any]:
    """The local engine's object: per-input token counts and truncation."""
    result, loaded = run.result, run.engine
    data = [{"index": i, "tokens": result.token_counts[i], "truncated": i in result.truncated,
             "embedding": _floats(row)} for i, row in enumerate(result.vectors)]
    return {"provider": run.provider, "model": loaded.model_id,
            "dimension": int(result.vectors.shape[1]),
            "execution_provider": loaded.execution_provider, "max_tokens": result.max_tokens,
            "data": data, "truncated": result.truncated,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
            "seconds": round(run.seconds, 4)}


def _provider_json(run: Any) -> dict[str, Any]:
    """A provider's object: what it reported (usage may be null), cost and attempts."""
    tokens = run.prompt_tokens
    return {"provider": run.provider, "model": run.model, "dimension": run.dimension,
            "local": run.local, "private": run.private,
            "data": [{"index": i, "embedding": _floats(row)} for i, row in enumerate(run.vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "cost_usd": run.cost_usd, "seconds": round(run.seconds, 4),
            "attempts": [attempt.to_json() for attempt in run.attempts]}


def _floats(row: Any) -> list[float]:
    return [float(f"{float(x):.9g}") for x in row]
