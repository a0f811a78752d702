"""Embeddings through the router: the local engine, or an OpenAI-compatible provider's
`/embeddings`, with the same privacy guarantee as chat.

Which provider: the one named (`--provider`), else the local engine. The config's
`defaultProvider` is not consulted: it names a chat provider, whose models are not embedding
models, and texts embedded without naming a provider stay on this machine, as before routing
existed. A provider of kind `onnx` is the local engine (`--model` as `embed` takes it); `openai`
(vLLM, Ollama, a local `serve`, OpenAI) and `openrouter` get OpenAI's `/embeddings` request;
Anthropic has no embeddings API and is refused before anything is sent. The remote model is
`--model` (an alias from the provider's `models` works), else the provider's `models.embedding`.

Privacy: a request is private on the same sources as chat (`--privacy high`, `--local-only`,
the config's `privacy` / `localOnly`, a matching rule's action: rules.decide finds them). A
private request to a provider that is not local (rules.is_local: onnx, or an openai entry marked
`local` on loopback) is refused before any network client exists, as chat refuses it
(rules.refuse_private_to_cloud: a usage error, exit 2); the fallback executor's guard checks the
built provider again before sending (defence in depth).

A remote request runs through FallbackExecutor with its one candidate, so it gets the chat
path's retries, backoff, retry-after handling and attempts, and writes one usage-log row
(command `embed`): cost $0 for a local provider, from the entry's `prices` when one matches the
model, else unknown (None); the price table is for chat models and is not used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import AgenticError, UsageError
from agentic_onnx.core.generation.events import Finish, StreamEvent, Usage
from agentic_onnx.router.config import LoadedConfig
from agentic_onnx.router.fallback import Attempt, FallbackExecutor
from agentic_onnx.router.provider_kinds import provider_class
from agentic_onnx.router.providers.base import Provider
from agentic_onnx.router.rules import (
    Candidate,
    RouteFlags,
    decide,
    is_local,
    model_for,
    refuse_private_to_cloud,
)
from agentic_onnx.router.secrets import redact

Notice = Callable[[str], None]
MODEL_ALIAS = "embedding"  # providers.NAME.models.embedding: the default remote model


@dataclass
class EmbeddingsRun:
    """Vectors in input order and where they came from. `engine` and `result` are the local
    engine's model and EmbeddingResult (token counts per input, truncation); None for a
    provider, which reports only `prompt_tokens` (None when it reported none)."""

    provider: str
    model: str
    vectors: Any  # rows of floats: a numpy array (local) or lists (a provider)
    local: bool
    private: bool
    seconds: float
    prompt_tokens: int | None = None
    cost_usd: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    engine: Any = None
    result: Any = None

    @property
    def dimension(self) -> int:
        return len(self.vectors[0]) if len(self.vectors) else 0


@dataclass(frozen=True)
class EmbeddingsRoute:
    """The provider chosen for an embedding request, and whether the request is private."""

    provider: str
    kind: str
    model: str | None
    private: bool
    privacy_source: str | None
    loaded: LoadedConfig | None


def route_embeddings(texts: Sequence[str], *, provider: str | None = None,
                     model: str | None = None, privacy: str | None = None,
                     local_only: bool = False, config_path: str | None = None,
                     input_type: str = "document", dimensions: int | None = None,
                     on_notice: Notice | None = None, execution_provider: str = "auto",
                     threads: int | None = None, batch_size: int = 32,
                     sleep: Callable[[float], None] = time.sleep) -> EmbeddingsRun:
    """Embed `texts` with the local engine or the named provider (module docstring)."""
    from agentic_onnx.core.embeddings.engine import INPUT_TYPES

    notice = (lambda message: on_notice(redact(message))) if on_notice else (lambda _: None)
    if input_type not in INPUT_TYPES:
        raise UsageError(f"Invalid value for --input-type: {input_type!r}.",
                         "Use document or query.")
    route = plan_embeddings(provider, model, privacy, local_only, config_path, notice)
    if provider_class(route.kind).local_embeddings:
        return _embed_locally(texts, route, input_type, dimensions, execution_provider,
                              threads, batch_size)
    if dimensions is not None and dimensions < 1:
        raise UsageError(f"Invalid value for --dimensions: {dimensions} is not positive.")
    return _embed_remotely(texts, route, input_type, dimensions, notice, sleep)


def plan_embeddings(provider: str | None, model: str | None, privacy: str | None,
                    local_only: bool, config_path: str | None,
                    notice: Notice = lambda _: None) -> EmbeddingsRoute:
    """Choose the provider and check privacy; sends nothing. The config is read (as chat
    reads it: trusted project files only) when a provider or `--config` is named."""
    if privacy not in (None, "high", "normal"):
        raise UsageError(f"Invalid value for --privacy: {privacy!r}.", "Use high or normal.")
    if provider is None and config_path is None:
        source = "--privacy high" if privacy == "high" else "--local-only" if local_only else None
        return EmbeddingsRoute("onnx", "onnx", model, source is not None, source, None)
    from agentic_onnx.router.config_lookup import load_config, new_warnings

    loaded = load_config(config_path)
    for warning in new_warnings(loaded):
        notice(warning)
    config = loaded.config
    # rules.decide finds every privacy source chat honours; asking for onnx keeps it from
    # refusing a cloud provider itself (that refusal is a usage error, as for chat).
    decision = decide(config, RouteFlags(provider="onnx", privacy=privacy,
                                         local_only=local_only), "")
    name = (provider or "onnx").strip()
    kind = _embedding_kind(loaded, name)
    refuse_private_to_cloud(config, decision, name, "embedding request")
    if not provider_class(kind).local_embeddings:
        model = model_for(config, name, model) if model else config.entry(name).models.get(
            MODEL_ALIAS)
        if not model:
            raise UsageError(f"No embedding model named for provider {name!r}.",
                             "Pass --model with the server's embedding model, or set "
                             f"providers.{name}.models.{MODEL_ALIAS} in the config.")
    return EmbeddingsRoute(name, kind, model, decision.private, decision.privacy_source, loaded)


def _embedding_kind(loaded: LoadedConfig, name: str) -> str:
    """The provider's kind, when it can embed; a usage error naming those that can."""
    config = loaded.config
    known = config.known_names()
    if name not in known:
        raise UsageError(f"Unknown provider {name!r}.",
                         f"Use one of: {', '.join(known)} (or add it to the config's providers).")
    kind = config.kind_of(name)
    if not _embeds(kind):
        able = [other for other in known if _embeds(config.kind_of(other))]
        raise UsageError(f"Provider {name!r} ({kind}) has no embeddings API; nothing was sent.",
                         f"Use one of: {', '.join(able)}.")
    return kind


def _embeds(kind: str) -> bool:
    """The local engine embeds for it, or it speaks OpenAI's `/embeddings`."""
    flags = provider_class(kind)
    return flags.local_embeddings or flags.embeddings_api


def _embed_locally(texts: Sequence[str], route: EmbeddingsRoute, input_type: str,
                   dimensions: int | None, execution_provider: str, threads: int | None,
                   batch_size: int) -> EmbeddingsRun:
    from agentic_onnx.core.embeddings.engine import load_embedding_model
    from agentic_onnx.core.embeddings.resolve import resolve_embedding

    folder = resolve_embedding(route.model)
    engine = load_embedding_model(folder, execution_provider, threads)
    started = time.perf_counter()
    result = engine.embed(texts, input_type=input_type, dimensions=dimensions,
                          batch_size=batch_size)
    return EmbeddingsRun(route.provider, engine.model_id, result.vectors, True, route.private,
                         time.perf_counter() - started, result.prompt_tokens, 0.0,
                         engine=engine, result=result)


def _embed_remotely(texts: Sequence[str], route: EmbeddingsRoute, input_type: str,
                    dimensions: int | None, notice: Notice,
                    sleep: Callable[[float], None]) -> EmbeddingsRun:
    from agentic_onnx.router.execute import retry_policy
    from agentic_onnx.router.providers import build_provider

    loaded, name = route.loaded, route.provider
    assert loaded is not None and route.model is not None
    call = _EmbeddingCall(build_provider(loaded, name), texts, dimensions,
                          input_type if input_type != "document" else None)
    executor = FallbackExecutor(
        candidates=[Candidate(name, route.model, is_local(loaded.config, name))],
        provider_for=lambda _: call,
        request_for=lambda candidate: ChatRequest((), model=candidate.model),
        private=route.private, policy_for=lambda _: retry_policy(loaded, name),
        max_retries_for=lambda _: loaded.config.entry(name).max_retries,
        sleep=sleep, notice=notice)
    try:
        executor.prepare_first()  # a missing key fails here: nothing sent, no usage row
    except AgenticError as error:
        error.details["attempts"] = [attempt.to_json() for attempt in executor.attempts]
        raise
    run = EmbeddingsRun(name, route.model, [], call.local, route.private, 0.0,
                        attempts=executor.attempts)
    started = time.perf_counter()
    outcome, error_text = "error", None
    try:
        for _ in executor.stream():
            pass
        outcome = "ok"
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except AgenticError as error:
        error_text = error.one_line()
        error.details["attempts"] = [attempt.to_json() for attempt in executor.attempts]
        raise
    finally:
        run.seconds = time.perf_counter() - started
        run.vectors, run.prompt_tokens = call.vectors, call.prompt_tokens
        run.cost_usd = _cost(loaded, name, route.model, call.local, call.prompt_tokens)
        _log(run, outcome, error_text, notice)
    return run


class _EmbeddingCall(Provider):
    """An OpenAI-compatible provider's embeddings, shaped as a Provider so FallbackExecutor's
    privacy guard and retries apply. Batches of at most 2,048 texts; a retry resumes at the
    batch that failed."""

    def __init__(self, provider: Any, texts: Sequence[str], dimensions: int | None,
                 input_type: str | None) -> None:
        super().__init__(provider.name, provider.local)
        self.provider, self.texts = provider, list(texts)
        self.dimensions, self.input_type = dimensions, input_type
        self.vectors: list[list[float]] = []
        self.prompt_tokens: int | None = 0

    def prepare(self, request: ChatRequest) -> None:
        self.provider.prepare(request)  # the key check, before anything is sent

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        from agentic_onnx.router.providers.openai_embeddings import MAX_INPUTS_PER_REQUEST

        while len(self.vectors) < len(self.texts):
            batch = self.texts[len(self.vectors):len(self.vectors) + MAX_INPUTS_PER_REQUEST]
            reply = self.provider.embed(batch, request.model, dimensions=self.dimensions,
                                        input_type=self.input_type)
            if self.vectors and len(reply.vectors[0]) != len(self.vectors[0]):
                raise _mixed_lengths(self.name)
            self.vectors += reply.vectors
            self.prompt_tokens = (None if self.prompt_tokens is None or reply.prompt_tokens
                                  is None else self.prompt_tokens + reply.prompt_tokens)
        yield Usage(self.prompt_tokens or 0, 0)
        yield Finish("stop")


def _mixed_lengths(name: str) -> AgenticError:
    from agentic_onnx.router.errors import ProviderError

    return ProviderError(name, f"{name} sent an invalid embeddings response: vectors of "
                         "different lengths across batches.", "Check the provider's model.")


def _cost(loaded: LoadedConfig, name: str, model: str, local: bool,
          prompt_tokens: int | None) -> float | None:
    """$0 locally; else the entry's own `prices` for this model (exact, longest prefix or `*`),
    or None: the price table knows chat models only."""
    from agentic_onnx.router.costs import ModelPrice, cost_usd, lookup_price

    prices = {key: ModelPrice(p.input, p.output) for key, p in
              loaded.config.entry(name).prices.items()}
    # kind "" has no table: only the entry's prices are consulted.
    price = lookup_price("", model, prices, local=local)
    if prompt_tokens is None:
        return 0.0 if local else None
    return cost_usd(price, Usage(prompt_tokens, 0))


def _log(run: EmbeddingsRun, outcome: str, error: str | None, notice: Notice) -> None:
    """One usage-log row; a log that cannot be written never fails the request."""
    from agentic_onnx.router.usage import UsageRecord, log_request

    try:
        log_request(UsageRecord(
            command="embed", provider=run.provider, model=run.model, rule="--provider",
            private=run.private, local=run.local, prompt_tokens=run.prompt_tokens or 0,
            completion_tokens=0, cost_usd=run.cost_usd if outcome == "ok" else None,
            latency_ms=run.seconds * 1000, ttft_ms=None, outcome=outcome,
            error=redact(error) if error else None, attempts=len(run.attempts) or 1))
    except Exception as failure:  # noqa: BLE001 - the log must never fail the request
        notice(failure.one_line() if isinstance(failure, AgenticError)
               else f"Could not write the usage log ({failure}).")
