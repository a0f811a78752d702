"""Requests and tokens per minute (agentic-flow's `rateLimit`), enforced before sending.

Limits sit on a provider entry (`rateLimit`: requestsPerMinute, tokensPerMinute), on one of its
models (`rateLimit.models.<model>`) and on a deployment (`deployments[i].rateLimit`). Each is a
sliding 60-second window: a request counts when it is sent, its tokens (prompt + completion)
when it ends. A request is sent only while every window it falls in has room (fewer requests
than the limit, fewer tokens than the limit); otherwise it waits up to `rateLimit.maxWaitMs`
(default 0) for the window to free, or the route moves on to its next candidate; a request no
candidate can take now fails with `RateLimitedError` (exit 4, HTTP 429 with Retry-After).

The windows live in this process (`LIMITER`: `serve` shares them across its requests). So that
one-shot `run`s count each other too, a provider's and a model's window start from the usage
log's rows of the last minute the first time this process looks at them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from agentic_onnx.router.errors import ProviderError

WINDOW_S = 60.0
Key = tuple[str, ...]  # ("provider", name) | ("model", name, model) | ("deployment", name, url)


class RateLimitedError(ProviderError):
    """No room in a rate limit now: the route moves on; the last one says when to come back."""

    http_status = 429
    api_code = "rate_limit_exceeded"

    def __init__(self, provider: str, what: str, wait_s: float) -> None:
        super().__init__(provider, f"{provider} is at its rate limit ({what}); room again in "
                         f"{wait_s:.1f}s.", "Wait and retry, raise rateLimit in the config, or "
                         "add a fallback provider.", status=429, retryable=False,
                         retry_after_s=max(1.0, wait_s))


@dataclass(frozen=True)
class Limit:
    """One window's limits (None: not limited)."""

    requests: int | None = None
    tokens: int | None = None

    @classmethod
    def of(cls, config: Any) -> Limit | None:
        """router.config.LimitPerMinute (or None) as a Limit; None when it limits nothing."""
        if config is None or (config.requests_per_minute is None
                              and config.tokens_per_minute is None):
            return None
        return cls(config.requests_per_minute, config.tokens_per_minute)

    def describe(self) -> str:
        parts = [f"{self.requests} requests/min" if self.requests else "",
                 f"{self.tokens} tokens/min" if self.tokens else ""]
        return ", ".join(filter(None, parts))


class _Window:
    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()

    def drop_before(self, start: float) -> None:
        while self.requests and self.requests[0] <= start:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= start:
            self.tokens.popleft()


class RateLimiter:
    """Sliding windows by key; thread-safe. `history(since)` gives the usage log's recent
    (provider, model, wall-clock time, tokens) rows, read once per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 history: Callable[[datetime], Iterable[tuple[str, str, datetime, int]]]
                 | None = None) -> None:
        self._clock = clock
        self._history = history if history is not None else _usage_history
        self._lock = threading.Lock()
        self._windows: dict[Key, _Window] = {}
        self._seeded = False

    def wait_s(self, key: Key, limit: Limit) -> float:
        """Seconds until `key`'s window has room under `limit` (0: now)."""
        with self._lock:
            return self._wait_locked(key, limit)

    def try_acquire(self, limited: list[tuple[Key, Limit]]) -> float:
        """Count one request in every window of `limited` if all have room (returns 0);
        otherwise count nothing and return the seconds until all may have room."""
        with self._lock:
            wait = max((self._wait_locked(key, limit) for key, limit in limited), default=0.0)
            if wait == 0.0:
                now = self._clock()
                for key, _ in limited:
                    self._window(key).requests.append(now)
            return wait

    def add_tokens(self, keys: Iterable[Key], tokens: int) -> None:
        if tokens <= 0:
            return
        with self._lock:
            now = self._clock()
            for key in keys:
                self._window(key).tokens.append((now, tokens))

    def _wait_locked(self, key: Key, limit: Limit) -> float:
        self._seed_locked()
        now = self._clock()
        window = self._window(key)
        window.drop_before(now - WINDOW_S)
        wait = 0.0
        if limit.requests is not None and len(window.requests) >= limit.requests:
            # room when the oldest requests that keep the count at the limit leave the window
            wait = window.requests[len(window.requests) - limit.requests] + WINDOW_S - now
        if limit.tokens is not None:
            used = sum(count for _, count in window.tokens)
            freed = 0
            for at, count in window.tokens:
                if used - freed < limit.tokens:
                    break
                freed += count
                wait = max(wait, at + WINDOW_S - now)
        return max(wait, 0.0)

    def _window(self, key: Key) -> _Window:
        return self._windows.setdefault(key, _Window())

    def _seed_locked(self) -> None:
        """The last minute of the usage log, for provider and model windows (once)."""
        if self._seeded:
            return
        self._seeded = True
        wall_now = datetime.now(timezone.utc)
        now = self._clock()
        try:
            logged = list(self._history(wall_now - timedelta(seconds=WINDOW_S)))
        except Exception:  # noqa: BLE001 - an unreadable log is no history, never a failure
            return
        for provider, model, at, tokens in logged:
            when = now - (wall_now - at).total_seconds()
            for key in (("provider", provider), ("model", provider, model)):
                window = self._window(key)
                window.requests.append(when)
                if tokens > 0:
                    window.tokens.append((when, tokens))


def _usage_history(since: datetime) -> list[tuple[str, str, datetime, int]]:
    from agentic_onnx.router.usage import rows

    return [(row["provider"] or "", row["model"] or "", datetime.fromisoformat(row["ts"]),
             int(row["prompt_tokens"] or 0) + int(row["completion_tokens"] or 0))
            for row in rows(since) if not row["cached"]]


LIMITER = RateLimiter()


class ProviderLimits:
    """A config's provider- and model-level limits, checked by the fallback executor before a
    candidate is sent (deployment limits are router/deployments.py's)."""

    def __init__(self, config: Any, limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._config = config
        self._limiter = limiter or LIMITER  # read when built: one request's executor
        self._sleep = sleep

    def admit(self, provider: str, model: str | None) -> None:
        """Count the request, waiting up to the entry's maxWaitMs for room; RateLimitedError
        when there is none by then."""
        limited = self._limited(provider, model)
        if not limited:
            return
        max_wait = self._config.entry(provider).rate_limit.max_wait_ms / 1000
        waited = 0.0
        while True:
            wait = self._limiter.try_acquire(limited)
            if wait == 0.0:
                return
            if waited + wait > max_wait:
                what = "; ".join(limit.describe() for _, limit in limited)
                raise RateLimitedError(provider, what, wait)
            self._sleep(wait)
            waited += wait

    def spent(self, provider: str, model: str | None, tokens: int) -> None:
        self._limiter.add_tokens([key for key, _ in self._limited(provider, model)], tokens)

    def _limited(self, provider: str, model: str | None) -> list[tuple[Key, Limit]]:
        settings = self._config.entry(provider).rate_limit
        if settings is None:
            return []
        limited = []
        whole = Limit.of(settings)
        if whole is not None:
            limited.append((("provider", provider), whole))
        per_model = Limit.of(settings.models.get(model or ""))
        if per_model is not None:
            limited.append((("model", provider, model or ""), per_model))
        return limited
