"""The router's one entry point: decide, then stream through the fallback chain into a Response.

`route_and_stream` takes one core `ChatRequest` (built once by the front end: `run`,
`router benchmark`) and returns a `RoutedRun` whose `response` is a lazy core `Response`:
iterating it sends the request (the first candidate is prepared eagerly, so loading a local
model stays out of the time to first token); when the stream ends the answer is checked against
the request (schema, tools: a StructuredOutputError ends the iteration), priced and logged to
the usage database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.events import StreamEvent
from agentic_onnx.core.generation.options import GenerationOptions
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.response import Response
from agentic_onnx.router.config import LoadedConfig
from agentic_onnx.router.config_lookup import load_config
from agentic_onnx.router.costs import ModelPrice, cost_usd, lookup_price
from agentic_onnx.router.fallback import Attempt, FallbackExecutor, RetryPolicy
from agentic_onnx.router.provider_kinds import price_kind
from agentic_onnx.router.providers import Provider, build_provider
from agentic_onnx.router.rate_limits import ProviderLimits
from agentic_onnx.router.rules import Candidate, Decision, RouteContext, RouteFlags, decide
from agentic_onnx.router.secrets import redact

Notice = Callable[[str], None]


@dataclass
class RoutedRun:
    """A decision and, unless it was a dry run, the Response that carries it out."""

    decision: Decision
    response: Response | None
    attempts: list[Attempt] = field(default_factory=list)
    config_path: Path | None = None
    service: str | None = None  # the resident service's URL, when it answered (router/service.py)
    deployment: str | None = None  # the endpoint that answered (router/deployments.py)
    cached: bool = False  # answered from the response cache (router/response_cache.py)

    def route_json(self) -> dict[str, Any]:
        return {"rule": self.decision.rule, "reason": self.decision.reason}

    def to_json(self) -> dict[str, Any]:
        """The `run --json` object: the Response's fields plus `route` and `attempts`."""
        base = self.response.to_json() if self.response is not None else {}
        return {**base, "service": self.service, "deployment": self.deployment,
                "cached": self.cached, **self.failure_json()}

    def failure_json(self) -> dict[str, Any]:
        """What a failed request's `--json` error object carries beside `error`."""
        return {"route": self.route_json(),
                "attempts": [attempt.to_json() for attempt in self.attempts]}


def plan_route(request: ChatRequest, flags: RouteFlags, config_path: str | None = None,
               on_notice: Notice | None = None) -> tuple[LoadedConfig, Decision]:
    """Decide without sending anything (`router explain`, `run --dry-run`). The config's
    warnings (an untrusted project file, ...) go to `on_notice`, once per process."""
    from agentic_onnx.router.config_lookup import new_warnings

    loaded = load_config(config_path)
    for warning in new_warnings(loaded) if on_notice is not None else ():
        on_notice(redact(warning))
    context = _route_context(loaded, flags, on_notice)
    if request.requires_tools and not flags.requires_tools:
        flags = replace(flags, requires_tools=True)
    return loaded, decide(loaded.config, flags, request.task_text, context)


def route_and_stream(
    request: ChatRequest,
    flags: RouteFlags,
    *,
    config_path: str | None = None,
    execution_provider: str = "auto",
    threads: int | None = None,
    device_id: int | None = None,
    dry_run: bool = False,
    log_prompts: bool = False,
    resolve_local: Callable[[str], Any] | None = None,
    on_notice: Notice | None = None,
    sleep: Callable[[float], None] = time.sleep,
    command: str = "run",
    fallback: bool = True,
    local_provider: Callable[[str], Provider] | None = None,
    use_service: bool = True,
) -> RoutedRun:
    """Route one chat request. `resolve_local` turns a local model spec into a model folder
    (default: core.models.resolve.resolve_model; the CLI passes its own to offer downloads).
    Every candidate gets the same request, with its own model and option defaults; each sends
    tools and response formats in its own mechanism. `local_provider` answers the candidates of
    local model kinds instead of an in-process model (`serve --route`: the server's own
    workers); `use_service`: local models may be answered by the resident service
    (router/service.py) when one runs (`--no-service`: never)."""
    # Every notice may quote a server (a fallback's reason): redacted on the way out.
    notice = (lambda message: on_notice(redact(message))) if on_notice else (lambda message: None)
    loaded, decision = plan_route(request, flags, config_path, notice)
    if dry_run:
        return RoutedRun(decision, None, [], loaded.path)
    if not fallback:
        decision.candidates = decision.candidates[:1]
    options = _apply_action(request.options, decision)
    log = _UsageLogger(loaded, decision, command, request.task_text if log_prompts else None,
                       notice)
    # The cache first: a stored answer sends nothing and costs nothing, whatever the limits.
    log.cache, log.cache_key = _cache_for(loaded, request, decision, options, notice)
    if log.cache_key is not None:
        answer = _cached_answer(log.cache, log.cache_key, notice)
        if answer is not None:  # nothing is sent: the stored answer, replayed
            from agentic_onnx.router.response_cache import replay

            response = Response(events=(), provider=answer["provider"], model=answer["model"],
                                execution_provider=answer["execution_provider"])
            response.events = log.replayed(replay(answer), response)
            return RoutedRun(decision, response, [], loaded.path, cached=True)
    log.cache_provider = decision.candidates[0].provider if decision.candidates else None
    _apply_spend_limits(loaded, decision, request, options, notice)
    providers: dict[str, Provider] = {}

    def provider_for(name: str) -> Provider:
        if name in providers:
            return providers[name]
        if local_provider is not None and loaded.config.provider_class(name).catalog_models:
            providers[name] = local_provider(name)
        else:
            providers[name] = build_provider(loaded, name, execution_provider=execution_provider,
                                             threads=threads, device_id=device_id,
                                             resolve=resolve_local,
                                             use_service=use_service, private=decision.private)
        return providers[name]

    executor = FallbackExecutor(
        candidates=list(decision.candidates), provider_for=provider_for,
        request_for=lambda candidate: request.for_candidate(
            candidate.model, _provider_defaults(options, loaded, candidate.provider)),
        private=decision.private, policy=RetryPolicy.from_config(loaded.config.retry),
        policy_for=lambda name: retry_policy(loaded, name),
        max_retries_for=lambda name: loaded.config.entry(name).max_retries,
        sleep=sleep, notice=notice, limits=ProviderLimits(loaded.config, sleep=sleep))
    run = RoutedRun(decision, None, executor.attempts, loaded.path)
    try:
        executor.prepare_first()
    except AgenticError as error:
        # Nothing was sent or generated (a typo in --model, a missing key): not a request the
        # usage log counts.
        error.details.update(run.failure_json())
        raise
    response = Response(events=(), provider=decision.provider, model=decision.model or "")
    def on_start(provider: Provider, candidate: Candidate) -> None:
        _describe(response, provider, candidate, notice)
        run.service = getattr(getattr(provider, "service", None), "url", None)

    executor.on_start = on_start
    response.events = log.wrap(executor, response, provider_for, run, request)
    run.response = response
    return run


def answered_locally(provider: Provider) -> bool:
    """Whether the request was answered on this machine (or a trusted host): the deployment's
    flag when the provider balances deployments, else the provider's."""
    return provider.deployment.local if provider.deployment is not None else provider.local


def _route_context(loaded: LoadedConfig, flags: RouteFlags,
                   on_notice: Notice | None = None) -> RouteContext:
    config = loaded.config

    def usable(name: str) -> bool:  # a kind that needs a key only with one
        return not config.provider_class(name).needs_key or loaded.api_key(name) is not None

    latency: dict[str, float] = {}
    if config.routing.mode == "performance-optimized":
        from agentic_onnx.router.usage import median_latency_by_provider

        latency = median_latency_by_provider(warn=on_notice)  # unreadable log: no history
    return RouteContext(usable=usable, latency_ms=latency)


def _apply_action(options: GenerationOptions, decision: Decision) -> GenerationOptions:
    """A rule's temperature/maxTokens apply unless the caller set that option."""
    chosen = options.model_fields_set
    updates: dict[str, Any] = {}
    if decision.temperature is not None and "temperature" not in chosen:
        updates["temperature"] = decision.temperature
    if decision.max_tokens is not None and "max_tokens" not in chosen:
        updates["max_tokens"] = decision.max_tokens
    if not updates:
        return options
    return GenerationOptions(**{name: getattr(options, name) for name in chosen}, **updates)


def _provider_defaults(options: GenerationOptions, loaded: LoadedConfig,
                       name: str) -> GenerationOptions:
    """A provider entry's maxTokens/temperature (agentic-flow's keys) for the options that
    neither the caller nor a rule chose."""
    defaults = loaded.config.entry(name).request_defaults()
    chosen = options.model_fields_set
    updates = {key: value for key, value in defaults.items() if key not in chosen}
    if not updates:
        return options
    return GenerationOptions(**{key: getattr(options, key) for key in chosen}, **updates)


def retry_policy(loaded: LoadedConfig, name: str) -> RetryPolicy:
    """The config's backoff, with a provider's `retryDelay` (ms) as its base delay."""
    policy = RetryPolicy.from_config(loaded.config.retry)
    delay_ms = loaded.config.entry(name).retry_delay
    if delay_ms is None:
        return policy
    return RetryPolicy(delay_ms / 1000, max(policy.max_delay_s, delay_ms / 1000),
                       policy.max_retry_after_s, policy.jitter)


def _describe(response: Response, provider: Provider, candidate: Candidate,
              notice: Notice) -> None:
    """Point the Response at the provider that is about to stream."""
    response.provider = candidate.provider
    response.model = getattr(provider, "model_name", None) or candidate.model or ""
    response.execution_provider = provider.execution_provider
    response.load_s = provider.load_s
    for warning in provider.warnings:
        notice(warning)
    provider.warnings = []


def _apply_spend_limits(loaded: LoadedConfig, decision: Decision, request: ChatRequest,
                        options: GenerationOptions, notice: Notice) -> None:
    """routing.costOptimization (router/spend_limits.py): a reached budget limit drops the cloud
    candidates, then those over maxCostPerRequest leave the route; reached budget alerts are a
    warning (once per process)."""
    from agentic_onnx.router.spend_limits import (
        budget_warnings,
        max_cost_per_request,
        narrow_route,
        within_budget_limits,
        within_cost_limit,
    )

    config = loaded.config
    spent = _cloud_spend(notice)
    if decision.candidates:
        narrow_route(decision, within_budget_limits(decision.candidates, config, spent, notice))
    limit = max_cost_per_request(config)
    if limit is not None and decision.candidates:
        def worst_case(candidate: Candidate, prompt_tokens: int) -> float | None:
            if candidate.local:
                return 0.0
            model = candidate.model or config.provider_class(candidate.provider).default_models.get("default")
            if not model:
                return None
            entry = config.entry(candidate.provider)
            overrides = {key: ModelPrice(p.input, p.output) for key, p in entry.prices.items()}
            price = lookup_price(price_kind(config.kind_of(candidate.provider)), model, overrides)
            max_tokens = _provider_defaults(options, loaded, candidate.provider).max_tokens
            return None if price is None else price.cost(prompt_tokens, max_tokens)

        narrow_route(decision, within_cost_limit(decision.candidates, request, limit, worst_case,
                                                 notice))
    if any(not candidate.local for candidate in decision.candidates):
        for warning in budget_warnings(config, spent):
            if warning not in _WARNED:
                _WARNED.add(warning)
                notice(warning)


_WARNED: set[str] = set()  # budget warnings already given in this process


def _cloud_spend(notice: Notice) -> Callable[[Any], float]:
    """The usage log's cloud spend since a time, read once per time for this request; an
    unreadable log counts as no spend, its one-line error given once as a notice."""
    known: dict[Any, float] = {}
    warned = False

    def spent(since: Any) -> float:
        nonlocal warned
        from agentic_onnx.router.usage import UsageLogError, cloud_spend_usd

        if since not in known:
            try:
                known[since] = cloud_spend_usd(since)
            except UsageLogError as error:
                if not warned:
                    notice(error.one_line())
                    warned = True
                known[since] = 0.0
        return known[since]
    return spent


def _cache_for(loaded: LoadedConfig, request: ChatRequest, decision: Decision,
               options: GenerationOptions, notice: Notice) -> tuple[Any, str | None]:
    """The response cache (config `cache`) and this request's key in it: None when the cache is
    off, the request is not deterministic, or the route's first choice names no model."""
    from agentic_onnx.router.response_cache import CacheSettings, ResponseCache, cache_key

    settings = CacheSettings.from_config(loaded.config.cache)
    if settings is None or not decision.candidates or not decision.candidates[0].model:
        return None, None
    first = decision.candidates[0]
    sent = request.for_candidate(first.model, _provider_defaults(options, loaded, first.provider))
    return ResponseCache(settings), cache_key(sent, first.provider, first.model)


def _cached_answer(cache: Any, key: str, notice: Notice) -> dict[str, Any] | None:
    try:
        return cache.get(key)
    except Exception as error:  # noqa: BLE001 - a broken cache is a miss, never a failure
        notice(f"Could not read the response cache ({error}); asking the provider.")
        return None


class _UsageLogger:
    """Prices the finished request and writes its usage row (never failing the request)."""

    cache: Any = None  # router.response_cache.ResponseCache, when the config turns it on
    cache_key: str | None = None
    cache_provider: str | None = None  # the provider the key is for: only its answers are kept
    local: bool | None = None  # whether what answered runs locally (its deployment's flag)

    def __init__(self, loaded: LoadedConfig, decision: Decision, command: str,
                 prompt: str | None, notice: Notice) -> None:
        self.loaded, self.decision, self.command = loaded, decision, command
        self.prompt, self.notice = prompt, notice

    def replayed(self, events: Iterator[StreamEvent], response: Response) -> Iterator[StreamEvent]:
        """A cached answer's events; its usage row says so (cost 0, nothing sent)."""
        yield from events
        response.cost_usd = 0.0
        self._write(response, "ok", None, [], cached=True)

    def _store(self, response: Response) -> None:
        """Keep the answer under the request's key, when the provider the key names gave it (a
        fallback's answer is not that provider's)."""
        if self.cache is None or self.cache_key is None or \
                response.provider != self.cache_provider:
            return
        try:
            self.cache.put(self.cache_key, response)
        except Exception as error:  # noqa: BLE001 - the cache must never fail the request
            self.notice(f"Could not write the response cache ({error}).")

    def wrap(self, executor: FallbackExecutor, response: Response,
             provider_for: Callable[[str], Provider], run: RoutedRun,
             request: ChatRequest) -> Iterator[StreamEvent]:
        outcome, error_text = "error", None
        try:
            first = True
            for event in executor.stream():
                if first:  # the deployment is chosen before the first event (a gateway's header)
                    self._answered_by(provider_for(response.provider), response, run)
                    first = False
                yield event
            provider = provider_for(response.provider)
            self._answered_by(provider, response, run)
            self.local = answered_locally(provider)
            response.cost_usd = self._cost(response, provider)  # type: ignore[assignment]
            invalid = request.answer_error(response)
            if invalid is not None:  # the tokens were spent: priced and counted, then reported
                outcome, error_text = "invalid", invalid.one_line()
                invalid.details.update(run.to_json())
                raise invalid
            outcome = "ok"
            self._store(response)
        except (GeneratorExit, KeyboardInterrupt):
            outcome = "interrupted"
            raise
        except AgenticError as error:
            if outcome != "invalid":
                error_text = error.one_line()
                error.details.update(run.failure_json())
            raise
        finally:
            self._write(response, outcome, error_text, executor.attempts)

    @staticmethod
    def _answered_by(provider: Provider, response: Response, run: RoutedRun) -> None:
        """The deployment that answered, and the model name it goes by there."""
        if provider.deployment is not None:
            run.deployment = provider.deployment.label
            response.model = provider.deployment.model or response.model

    def _cost(self, response: Response, provider: Provider) -> float | None:
        reported = getattr(provider, "reported_cost_usd", None)
        local = answered_locally(provider)
        if reported is not None and not local:
            return round(reported, 6)
        return cost_usd(self._price(response.provider, response.model, local), response.usage)

    def _price(self, name: str, model: str, local: bool) -> ModelPrice | None:
        entry = self.loaded.config.entry(name)
        overrides = {key: ModelPrice(p.input, p.output) for key, p in entry.prices.items()}
        return lookup_price(price_kind(self.loaded.config.kind_of(name)), model, overrides,
                            local=local)

    def _write(self, response: Response | None, outcome: str, error: str | None,
               attempts: list[Attempt], cached: bool = False) -> None:
        from agentic_onnx.router.rules import is_local
        from agentic_onnx.router.usage import UsageRecord, log_request

        provider = response.provider if response else self.decision.provider
        timings = response.timings if response else None
        usage = response.usage if response else None
        try:
            log_request(UsageRecord(
                command=self.command, provider=provider,
                model=response.model if response else self.decision.model,
                rule=self.decision.rule, private=self.decision.private,
                local=self.local if self.local is not None
                else is_local(self.loaded.config, provider),
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cost_usd=response.cost_usd if response and outcome in ("ok", "invalid") else None,
                latency_ms=timings.total_s * 1000 if timings else None,
                ttft_ms=timings.ttft_ms if timings else None, outcome=outcome,
                error=redact(error) if error else None,
                attempts=0 if cached else len(attempts) or 1, prompt=self.prompt,
                cached=cached))
        except Exception as failure:  # noqa: BLE001 - the log must never fail the request
            self.notice(failure.one_line() if isinstance(failure, AgenticError)
                        else f"Could not write the usage log ({failure}).")
