"""Deployments: several endpoints serving one provider's models, picked per request.

A provider entry lists them as `deployments` (or, the short form, `baseUrls`): other
`agentic-onnx serve` nodes, vLLM, llama-server, Ollama, any OpenAI-compatible server. Per request
the provider asks `DEPLOYMENTS.acquire` for one, by the entry's `strategy`:

- `least-outstanding` (default): the fewest requests in flight per unit of `weight`; ties go to
  the one that has served fewest, then to config order (so sequential requests take turns);
- `latency-weighted`: at random, weighted by `weight` / its recent time to first token (an
  exponential average; a deployment not yet measured counts as the fastest, so it gets tried);
- `simple-shuffle`: at random, weighted by `weight`.

Skipped: deployments in cooldown and those at their own rate limit. The circuit breaker
(`routing.performance.circuitBreaker`: `enabled`, `threshold`, `cooldownMs`) opens after
`threshold` consecutive failures (timeouts, connection errors, 429, 5xx): no request goes there
for `cooldownMs`; then one probe request is let through (half-open); its success closes the
breaker, its failure opens it again. An answer that is the client's fault (400, 404) shows the
deployment is alive. The state is this process's (`serve` shares it across requests).

Privacy is per deployment: a private request is given only the deployments that are `local`
(loopback, or a host in `trustedHosts`); the provider builds itself from those alone.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentic_onnx.router.errors import ProviderError
from agentic_onnx.router import rate_limits
from agentic_onnx.router.rate_limits import Limit, RateLimitedError, RateLimiter

LATENCY_SMOOTHING = 0.3  # weight of the newest time to first token in the running average


@dataclass(frozen=True)
class Endpoint:
    """One deployment, resolved from the config (its key and headers filled in)."""

    provider: str
    url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    local: bool = False
    weight: float = 1.0
    model: str | None = None
    limit: Limit | None = None

    @property
    def label(self) -> str:
        """The URL without credentials or query: what logs, headers and `--json` show."""
        try:
            parts = urlsplit(self.url)
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit((parts.scheme, host, parts.path, "", ""))
        except ValueError:
            return "(unparseable URL)"


@dataclass(frozen=True)
class BreakerSettings:
    enabled: bool = True
    threshold: int = 3
    cooldown_s: float = 30.0

    @classmethod
    def from_config(cls, performance: Any) -> BreakerSettings:
        """agentic-flow's `routing.performance.circuitBreaker` (bad values: the defaults)."""
        raw = performance.get("circuitBreaker") if isinstance(performance, dict) else None
        if not isinstance(raw, dict):
            return cls()
        threshold, cooldown = raw.get("threshold"), raw.get("cooldownMs")
        return cls(enabled=raw.get("enabled") is not False,
                   threshold=threshold if _positive_int(threshold) else cls.threshold,
                   cooldown_s=cooldown / 1000 if _positive_int(cooldown) else cls.cooldown_s)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class _State:
    in_flight: int = 0
    served: int = 0
    failures: int = 0  # consecutive
    open_until: float | None = None  # the breaker is open until then (monotonic seconds)
    probing: bool = False  # half-open: the one probe request is in flight
    ttft_s: float | None = None

    def breaker(self, now: float) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until or self.probing else "half-open"


class NoDeploymentError(ProviderError):
    """Every deployment of a provider is cooling down (or was just tried)."""

    http_status = 503
    api_code = "overloaded"


class Lease:
    """One request's use of one deployment: report how it went, then release it."""

    def __init__(self, pool: DeploymentPool, endpoint: Endpoint,
                 breaker: BreakerSettings) -> None:
        self.pool, self.endpoint, self.breaker = pool, endpoint, breaker
        self._started = pool.clock()
        self._first: float | None = None

    def first_output(self) -> None:
        if self._first is None:
            self._first = self.pool.clock() - self._started

    def release(self, failed: bool, tokens: int = 0) -> None:
        self.pool._release(self, failed, self._first, tokens)


class DeploymentPool:
    """The state of every deployment this process has sent to (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 limiter: RateLimiter | None = None, rng: random.Random | None = None) -> None:
        self.clock = clock
        self._own_limiter = limiter
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], _State] = {}

    @contextmanager
    def lease(self, endpoints: Sequence[Endpoint], strategy: str, breaker: BreakerSettings,
              exclude: Sequence[Endpoint] = ()) -> Iterator[Lease]:
        """Acquire a deployment for one request, released when the body ends: as failed when it
        raises a ProviderError that counts against the deployment."""
        lease = self.acquire(endpoints, strategy, breaker, exclude)
        failed = False
        try:
            yield lease
        except ProviderError as error:
            failed = counts_as_failure(error)
            raise
        finally:
            lease.release(failed=failed)

    def acquire(self, endpoints: Sequence[Endpoint], strategy: str, breaker: BreakerSettings,
                exclude: Sequence[Endpoint] = ()) -> Lease:
        """A deployment for one request by `strategy`; NoDeploymentError or RateLimitedError
        (with the seconds until one may take it) when none can now."""
        with self._lock:
            now = self.clock()
            usable, waits, limited = [], [], []
            for endpoint in endpoints:
                if endpoint in exclude:
                    continue
                state = self._state(endpoint)
                status = state.breaker(now) if breaker.enabled else "closed"
                if status == "open":
                    waits.append(max((state.open_until or now) - now, 0.0))
                    continue
                if endpoint.limit is not None:
                    wait = self._limiter.wait_s(_limit_key(endpoint), endpoint.limit)
                    if wait > 0:
                        limited.append((wait, endpoint))
                        continue
                usable.append(endpoint)
            if not usable:
                raise self._none_left(endpoints[0].provider, waits, limited, bool(exclude))
            chosen = self._choose(usable, strategy)
            state = self._state(chosen)
            if breaker.enabled and state.breaker(now) == "half-open":
                state.probing = True
            state.in_flight += 1
            state.served += 1
            if chosen.limit is not None:
                self._limiter.try_acquire([(_limit_key(chosen), chosen.limit)])
            return Lease(self, chosen, breaker)

    @property
    def _limiter(self) -> RateLimiter:
        return self._own_limiter or rate_limits.LIMITER

    def snapshot(self) -> list[dict[str, Any]]:
        """Each deployment's state (for `/health` and tests)."""
        with self._lock:
            now = self.clock()
            return [{"provider": provider, "url": Endpoint(provider, url).label,
                     "in_flight": state.in_flight, "served": state.served,
                     "consecutive_failures": state.failures, "breaker": state.breaker(now),
                     "ttft_ms": round(state.ttft_s * 1000, 1) if state.ttft_s else None}
                    for (provider, url), state in self._states.items()]

    def _choose(self, usable: list[Endpoint], strategy: str) -> Endpoint:
        if strategy == "simple-shuffle":
            return self._rng.choices(usable, weights=[e.weight for e in usable])[0]
        if strategy == "latency-weighted":
            known = [s.ttft_s for s in map(self._state, usable) if s.ttft_s]
            fastest = min(known) if known else 1.0
            weights = [e.weight / (self._state(e).ttft_s or fastest) for e in usable]
            return self._rng.choices(usable, weights=weights)[0]
        return min(usable, key=lambda e: (self._state(e).in_flight / e.weight,
                                          self._state(e).served / e.weight, usable.index(e)))

    def _release(self, lease: Lease, failed: bool, ttft_s: float | None, tokens: int) -> None:
        endpoint = lease.endpoint
        with self._lock:
            state = self._state(endpoint)
            state.in_flight = max(state.in_flight - 1, 0)
            state.probing = False
            if failed and lease.breaker.enabled:
                state.failures += 1
                if state.open_until is not None or state.failures >= lease.breaker.threshold:
                    state.open_until = self.clock() + lease.breaker.cooldown_s
            else:
                state.failures, state.open_until = 0, None
                if ttft_s is not None:
                    state.ttft_s = ttft_s if state.ttft_s is None else (
                        LATENCY_SMOOTHING * ttft_s + (1 - LATENCY_SMOOTHING) * state.ttft_s)
        if endpoint.limit is not None and tokens:
            self._limiter.add_tokens([_limit_key(endpoint)], tokens)

    def _state(self, endpoint: Endpoint) -> _State:
        return self._states.setdefault((endpoint.provider, endpoint.url), _State())

    def _none_left(self, provider: str, waits: list[float],
                   limited: list[tuple[float, Endpoint]], tried: bool) -> ProviderError:
        if limited and not waits:
            wait, endpoint = min(limited, key=lambda item: item[0])
            return RateLimitedError(provider, f"every deployment; {endpoint.label}: "
                                    f"{endpoint.limit.describe() if endpoint.limit else ''}", wait)
        soonest = min([*waits, *(wait for wait, _ in limited)], default=None)
        reason = ("every other deployment is cooling down after failures" if tried
                  else "every deployment is cooling down after failures")
        return NoDeploymentError(
            provider, f"{provider}: {reason}" + (f"; one may take requests again in "
                                                 f"{soonest:.0f}s." if soonest else "."),
            "Check the deployments (`agentic-onnx router test`), or wait for the cooldown.",
            status=503, retryable=False, retry_after_s=max(1.0, soonest or 1.0))


def endpoints_for(loaded: Any, name: str, entry: Any, kind: str,
                  private: bool = False) -> list[Endpoint]:
    """Entry `name`'s deployments (`loaded`: a router.config.LoadedConfig), with keys and
    headers resolved; `private`: only the local ones. Local means marked so AND on loopback or
    a trusted host (config checks this too)."""
    from agentic_onnx.router.provider_kinds import is_trusted_url

    trusted = loaded.config.trusted_hosts
    key = loaded.api_key(name)
    deployments = entry.deployments or [None] * len(entry.urls(kind))
    endpoints = []
    for url, marked, deployment in zip(entry.urls(kind), entry.marked_local(), deployments):
        local = marked and is_trusted_url(url, trusted)
        if private and not local:
            continue
        if deployment is None:
            endpoints.append(Endpoint(name, url.rstrip("/"), key, dict(entry.headers), local))
        else:
            # A deployment that names its own key never gets the entry's (even when its
            # ${VAR} is unset): the entry's key is for the entry's endpoints.
            own_key = "api_key" in deployment.model_fields_set
            endpoints.append(Endpoint(
                name, url.rstrip("/"), (deployment.api_key or None) if own_key else key,
                {**entry.headers, **(deployment.headers or {})}, local, deployment.weight,
                deployment.model, Limit.of(deployment.rate_limit)))
    return endpoints


def _limit_key(endpoint: Endpoint) -> tuple[str, ...]:
    return ("deployment", endpoint.provider, endpoint.url)


def counts_as_failure(error: ProviderError) -> bool:
    """Errors that say the deployment is unwell (not the request): transport failures,
    timeouts, 429 and 5xx (retryable ones)."""
    return error.retryable and not isinstance(error, (RateLimitedError, NoDeploymentError))


DEPLOYMENTS = DeploymentPool()
