"""The router's errors: each is an AgenticError with a one-line message, a hint and an exit code.

Every message that can hold text from a server passes through `secrets.redact`, so an API key
echoed back by a proxy never reaches the terminal, the usage log or a `--debug` traceback.
"""

from __future__ import annotations

from agentic_onnx.core.errors import AgenticError, ExitCode, UsageError
from agentic_onnx.router.secrets import redact


class ConfigError(UsageError):
    """The router config file is missing, not JSON, or not what the schema expects (the
    operator's to fix, not a client's: a server answers 500)."""

    http_status = 500


class ProviderError(AgenticError):
    """A provider failed. `retryable`: the same provider may succeed if asked again (timeouts,
    429, 5xx, 529); `status`: the HTTP status, if any; `retry_after_s`: the server's hint."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 502  # a gateway's answer when the provider behind it failed

    def __init__(self, provider: str, message: str, hint: str | None = None, *,
                 status: int | None = None, retryable: bool = False,
                 retry_after_s: float | None = None, code: str | None = None) -> None:
        super().__init__(redact(message), redact(hint) if hint else None)
        self.provider = provider
        self.status = status
        self.code = code  # the error body's `code` (OpenAI), when the server sent one
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class MissingKeyError(ProviderError):
    """A cloud provider has no API key; the message names the variable to set."""

    def __init__(self, provider: str, env_var: str) -> None:
        super().__init__(
            provider, f"No API key for {provider}: {env_var} is not set.",
            f"Set {env_var} (export {env_var}=...) or put apiKey in the config's "
            f"providers.{provider} entry.",
        )
        self.env_var = env_var


class StreamInterruptedError(ProviderError):
    """The stream failed after text had reached the user: never restarted on another provider,
    because the user would see two different answers spliced together."""


class PrivacyError(AgenticError):
    """A private request (privacy high or local-only) that no local provider could answer."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 403  # refused by policy: sending it elsewhere is not allowed


class BudgetExceededError(AgenticError):
    """A cloud-only route once the usage log's cloud spend has reached a budget limit
    (routing.costOptimization.budgetLimits): refused before anything is sent. Exit 4, as a
    private request no local provider could answer: no allowed provider is left to ask."""

    exit_code = ExitCode.PROVIDER_ERROR
    http_status = 402  # Payment Required: what a metered API answers once the money is spent
    api_code = "budget_exceeded"

    def __init__(self, period: str, when: str, spent_usd: float, limit_usd: float) -> None:
        super().__init__(
            f"Refused: ${spent_usd:.2f} spent on cloud providers {when}, at or over the "
            f"{period} budget limit of ${limit_usd:g}, and no local provider is in the route.",
            f"Raise routing.costOptimization.budgetLimits.{period} in the config, or use a "
            "local provider (--provider onnx, --local-only).")
        self.details["budget"] = {"period": period, "spent_usd": round(spent_usd, 6),
                                  "limit_usd": limit_usd}


class AllProvidersFailedError(ProviderError):
    """Every provider in the route failed; the message lists each one's outcome."""
