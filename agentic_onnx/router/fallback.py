"""Running a routed request: retries with backoff, the fallback chain, and the privacy guard.

For each candidate in order:
- build its provider; a private request refuses any provider that is not local (a second,
  independent check after the rules' filter: if a bug ever put a cloud provider among a private
  request's candidates, it is refused here before anything is sent);
- `prepare` it (key present, local model loaded), then stream;
- `rateLimit` (router/rate_limits.py): a candidate at its limit waits up to `maxWaitMs`, else
  the route moves on (when every candidate is at its limit, the soonest one's RateLimitedError);
- on a retryable error before any output (timeouts, connection errors, 429, 5xx, 529): wait
  min(maxDelay, base * 2^n) plus up to 50% jitter, or the server's `retry-after` when it is within
  `maxRetryAfterMs` (a longer one moves on at once; one that is unparseable, negative, past or
  more than a day away counts as absent), at most `maxRetries` times;
- on any other error before output (400/401/402/403/404, a missing key, a model that is not
  installed, a prompt longer than the local context): move on to the next candidate;
- after text or a tool call reached the caller, an error is reported as it is
  (StreamInterruptedError): restarting elsewhere would splice two different answers.
When every candidate failed: a single candidate's own error is raised unchanged (so its exit
code and hint survive); several give AllProvidersFailedError, or PrivacyError for a private
request.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import AgenticError
from agentic_onnx.core.generation.events import StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.router.config import RetryConfig
from agentic_onnx.router.errors import (
    AllProvidersFailedError,
    MissingKeyError,
    PrivacyError,
    ProviderError,
    StreamInterruptedError,
)
from agentic_onnx.router.providers.base import Provider
from agentic_onnx.router.rate_limits import RateLimitedError
from agentic_onnx.router.rules import Candidate
from agentic_onnx.router.secrets import redact


@dataclass
class Attempt:
    """One provider tried for a request: how many times, and how it ended."""

    provider: str
    model: str | None
    outcome: str = "pending"  # ok | failed | interrupted | pending
    tries: int = 0
    error: str | None = None
    status: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "outcome": self.outcome,
                "tries": self.tries, "error": self.error, "status": self.status,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    jitter: Callable[[float, float], float] = random.uniform

    @classmethod
    def from_config(cls, retry: RetryConfig) -> RetryPolicy:
        return cls(retry.base_delay_ms / 1000, retry.max_delay_ms / 1000,
                   retry.max_retry_after_ms / 1000)

    def delay(self, retry_index: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before retry number `retry_index` (0-based); None: do not retry.
        A hint that is not a finite, non-negative number counts as no hint (backoff)."""
        if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** retry_index)
        return backoff + self.jitter(0.0, backoff / 2)

    def worst_case_s(self, max_retries: int) -> float:
        """The longest all retries of one provider can wait: the time bound the tests check."""
        return max_retries * max(self.max_delay_s * 1.5, self.max_retry_after_s)


@dataclass
class FallbackExecutor:
    """Streams one request through its candidates. Not thread-safe: one request per executor."""

    candidates: list[Candidate]
    provider_for: Callable[[str], Provider]
    request_for: Callable[[Candidate], ChatRequest]
    private: bool
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    policy_for: Callable[[str], RetryPolicy] | None = None  # per provider (its retryDelay)
    max_retries_for: Callable[[str], int] = lambda name: 2
    sleep: Callable[[float], None] = time.sleep
    notice: Callable[[str], None] = lambda message: None
    on_start: Callable[[Provider, Candidate], None] = lambda provider, candidate: None
    limits: Any = None  # router.rate_limits.ProviderLimits: rateLimit, checked before sending
    attempts: list[Attempt] = field(default_factory=list)
    _next: int = 0
    _prepared: Provider | None = None
    _errors: list[AgenticError] = field(default_factory=list)

    def prepare_first(self) -> None:
        """Prepare candidates in order until one is ready (loading a local model here keeps
        load time out of the time to first token); raises when none is."""
        while self._next < len(self.candidates):
            candidate = self.candidates[self._next]
            attempt = self._begin(candidate)
            started = time.perf_counter()
            try:
                provider = self._provider(candidate)
                attempt.tries = 1
                provider.prepare(self.request_for(candidate))
                self._prepared = provider
                attempt.seconds = time.perf_counter() - started
                return
            except AgenticError as error:
                self._fail(attempt, error, started)
                self._next += 1
                self._notice_skipped(error)
        raise self._final_error()

    def stream(self) -> Iterator[StreamEvent]:
        while self._next < len(self.candidates):
            candidate = self.candidates[self._next]
            attempt = self._current_attempt(candidate)
            started = time.perf_counter()
            output_sent = [False]
            try:
                provider = self._prepared or self._provider(candidate)
                self._prepared = None
                yield from self._with_retries(provider, candidate, attempt, output_sent)
                attempt.outcome = "ok"
                attempt.seconds += time.perf_counter() - started
                return
            except AgenticError as error:
                self._fail(attempt, error, started)
                if output_sent[0]:
                    attempt.outcome = "interrupted"
                    raise self._interrupted(candidate, error) from None
                self._next += 1
                if self._notice_skipped(error):
                    continue
                if self._next < len(self.candidates):
                    self.notice(f"{candidate.provider} failed ({error.message}); trying "
                                f"{self.candidates[self._next].provider}.")
        raise self._final_error()

    def _notice_skipped(self, error: AgenticError) -> bool:
        """One line for a provider passed over for want of a key, when the route goes on to
        another candidate (a provider asked for alone fails with the error itself)."""
        if not isinstance(error, MissingKeyError) or self._next >= len(self.candidates):
            return False
        self.notice(f"Skipped {error.provider}: {error.env_var} is not set.")
        return True

    def _with_retries(self, provider: Provider, candidate: Candidate, attempt: Attempt,
                      output_sent: list[bool]) -> Iterator[StreamEvent]:
        request = self.request_for(candidate)
        max_retries = self.max_retries_for(candidate.provider)
        policy = self.policy_for(candidate.provider) if self.policy_for else self.policy
        for retry in range(max_retries + 1):
            attempt.tries = max(attempt.tries, retry + 1)
            try:
                provider.prepare(request)
                if self.limits is not None:
                    self.limits.admit(candidate.provider, request.model)
                self.on_start(provider, candidate)
                tokens = 0
                for event in provider.stream(request):
                    if isinstance(event, (TextDelta, ToolCallDelta)):
                        output_sent[0] = True
                    elif isinstance(event, Usage):
                        tokens = event.prompt_tokens + event.completion_tokens
                    yield event
                if self.limits is not None:
                    self.limits.spent(candidate.provider, request.model, tokens)
                return
            except ProviderError as error:
                if output_sent[0] or not error.retryable or retry == max_retries:
                    raise
                delay = policy.delay(retry, error.retry_after_s)
                if delay is None:
                    raise ProviderError(
                        error.provider, f"{error.message} (asked to retry after "
                        f"{error.retry_after_s:.0f}s, more than the "
                        f"{policy.max_retry_after_s:.0f}s we wait)", error.hint,
                        status=error.status, retryable=False) from None
                self.notice(f"{candidate.provider}: {error.message} Retrying in {delay:.2f}s "
                            f"({retry + 1}/{max_retries}).")
                self.sleep(delay)

    def _provider(self, candidate: Candidate) -> Provider:
        provider = self.provider_for(candidate.provider)
        if self.private and not (candidate.local and provider.local):
            raise PrivacyError(
                f"Refused to send a private request to {candidate.provider}: it is not a "
                "local provider.", "This is a bug in the router's rules; please report it.")
        return provider

    def _begin(self, candidate: Candidate) -> Attempt:
        attempt = Attempt(candidate.provider, candidate.model)
        self.attempts.append(attempt)
        return attempt

    def _current_attempt(self, candidate: Candidate) -> Attempt:
        last = self.attempts[-1] if self.attempts else None
        if last is not None and last.provider == candidate.provider and last.outcome == "pending":
            return last
        return self._begin(candidate)

    def _fail(self, attempt: Attempt, error: AgenticError, started: float) -> None:
        attempt.outcome = "failed"
        attempt.error = redact(error.message)
        attempt.status = getattr(error, "status", None)
        attempt.tries = max(attempt.tries, 1)
        attempt.seconds += time.perf_counter() - started
        self._errors.append(error)

    def _interrupted(self, candidate: Candidate, error: AgenticError) -> AgenticError:
        return StreamInterruptedError(
            candidate.provider, f"{candidate.provider} failed after the answer had started: "
            f"{error.message}", "The partial answer above is incomplete; run the request again.",
            status=getattr(error, "status", None))

    def _final_error(self) -> AgenticError:
        if len(self._errors) == 1:
            return self._errors[0]
        if self._errors and all(isinstance(error, RateLimitedError) for error in self._errors):
            # every candidate is at its limit: the client hears when the first has room
            return min(self._errors, key=lambda error: getattr(error, "retry_after_s", 0) or 0)
        summary = "; ".join(f"{a.provider}: {a.error}" for a in self.attempts if a.error)
        if self.private:
            return PrivacyError(
                f"No local provider could answer this private request ({summary}).",
                "Fix the local model (`agentic-onnx onnx list`) or start the local server; "
                "a private request never goes to a cloud provider.")
        if not self._errors:
            return AllProvidersFailedError("router", "No provider to try.",
                                           "Check the config's providers and fallbackChain.")
        return AllProvidersFailedError("router", f"Every provider failed ({summary}).",
                                       "See `attempts` in --json output, or fix the first error.")
