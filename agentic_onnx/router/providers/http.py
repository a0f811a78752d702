"""HTTP for the cloud providers (server-sent events, and plain JSON answers such as
`/embeddings`), with one error policy for all of them.

httpx2 (already installed: huggingface_hub depends on it) is imported only when a request is
made. Transport failures and HTTP statuses become `ProviderError`s:
retryable: timeouts, connection errors, 408, 409, 429, 5xx and Anthropic's 529;
not retryable: 400, 401, 403, OpenRouter's 402, 404 and other 4xx.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any

from agentic_onnx.router.errors import ProviderError

RETRYABLE_STATUSES = frozenset({408, 409, 429})
CONNECT_TIMEOUT_CAP_S = 10.0
MAX_ERROR_BODY = 2000
MAX_JSON_BODY = 256 * 1024 * 1024  # 2,048 vectors of 3,072 floats as text fit well inside
MAX_RETRY_AFTER_S = 86_400.0  # a longer hint is not a hint a chat client can act on
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")


@dataclass(frozen=True)
class HttpTarget:
    provider: str
    label: str  # "Anthropic", "OpenRouter", ...
    key_env_var: str | None = None


def make_client(timeout_s: float) -> Any:
    """An httpx2 client whose read timeout bounds every wait, including between stream chunks."""
    import httpx2

    timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_CAP_S))
    return httpx2.Client(timeout=timeout, follow_redirects=False)


def sse_events(client: Any, target: HttpTarget, url: str, headers: dict[str, str],
               payload: dict[str, Any]) -> Iterator[Any]:
    """POST `payload` and yield the response's server-sent events (comments already skipped).
    Raises ProviderError for transport failures and error statuses, before or during the stream.
    """
    import httpx2

    with transport_errors(target):
        with client.stream("POST", url, json=payload,
                           headers={"accept": "text/event-stream", **headers}) as response:
            _raise_for_status(target, response)
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                response.read()
                raise body_error(target, response.text, response.status_code)
            yield from httpx2.EventSource(response)


def _raise_for_status(target: HttpTarget, response: Any) -> None:
    """An error status becomes the ProviderError that says what the server answered."""
    if response.status_code >= 400:
        response.read()
        raise status_error(target, response.status_code, response.text, response.headers)


def post_json(client: Any, target: HttpTarget, url: str, headers: dict[str, str],
              payload: dict[str, Any], max_bytes: int = MAX_JSON_BODY) -> Any:
    """POST `payload` and return the decoded JSON answer (a request that does not stream).
    The same error policy as `sse_events`; a body over `max_bytes`, or one that is not JSON,
    is a ProviderError too (the server is not trusted to be well-behaved)."""
    with transport_errors(target):
        with client.stream("POST", url, json=payload,
                           headers={"accept": "application/json", **headers}) as response:
            _raise_for_status(target, response)
            body = bytearray()
            for part in response.iter_bytes():
                body += part
                if len(body) > max_bytes:
                    raise ProviderError(target.provider, f"{target.label} sent more than "
                                        f"{max_bytes // 2**20} MiB.", "Send fewer inputs.",
                                        status=response.status_code)
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProviderError(target.provider, f"{target.label} answered with a body that is "
                            "not JSON.", "Check that baseUrl points at an OpenAI-compatible "
                            "API.", status=response.status_code) from None


@contextmanager
def transport_errors(target: HttpTarget) -> Iterator[None]:
    """Timeouts and connection failures as retryable ProviderErrors."""
    import httpx2

    try:
        yield
    except httpx2.TimeoutException as error:
        raise ProviderError(target.provider,
                            f"{target.label} timed out ({type(error).__name__}).",
                            "Raise the provider's timeout in the config, or try again.",
                            retryable=True) from None
    except httpx2.TransportError as error:
        raise ProviderError(target.provider,
                            f"{target.label} could not be reached: {type(error).__name__} "
                            f"({_first_line(str(error))}).",
                            "Check the network and the provider's baseUrl.",
                            retryable=True) from None


def status_error(target: HttpTarget, status: int, body: str, headers: Any) -> ProviderError:
    """An HTTP error status as a ProviderError (message from the body when it is JSON)."""
    detail = error_detail(body) or _first_line(body[:200]) or "no details"
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError(target.provider, f"{target.label} returned HTTP {status}: {detail}",
                         _status_hint(target, status), status=status, retryable=retryable,
                         retry_after_s=retry_after_seconds(headers), code=error_code(body))


def body_error(target: HttpTarget, body: str, status: int) -> ProviderError:
    """A non-stream body where a stream was expected (some servers answer errors this way)."""
    detail = error_detail(body) or "expected a text/event-stream response"
    return ProviderError(target.provider, f"{target.label} answered without a stream: {detail}",
                         "Check that baseUrl points at an OpenAI/Anthropic-compatible API.",
                         status=status, retryable=False)


def error_code(body: str) -> str | None:
    """The `error.code` of an OpenAI error body (e.g. `context_length_exceeded`), if any."""
    try:
        error = json.loads(body[:MAX_ERROR_BODY * 10]).get("error")
    except (ValueError, TypeError, AttributeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def error_detail(body: str) -> str | None:
    """The `message` of an Anthropic or OpenAI error body, if the body is such JSON."""
    try:
        data = json.loads(body[:MAX_ERROR_BODY * 10])
    except (ValueError, TypeError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        message = _first_line(str(error.get("message", ""))) or "no message"
        return f"{message} ({kind})" if kind else message
    if isinstance(error, str):
        return _first_line(error)
    return None


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms`, else `retry-after` in seconds or as an HTTP date; None when absent or
    unusable. A server's hint is only a hint: a value we cannot parse (`soon`), a negative or
    absurd number (`-5`, `nan`, `1e999`, more than a day), a bad or past HTTP date all count as
    no hint, so the caller falls back to its own backoff instead of failing."""
    if headers is None:
        return None
    milliseconds = _plausible_seconds(headers.get("retry-after-ms"), scale=1000)
    if milliseconds is not None:
        return milliseconds
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _plausible_seconds(value)
    return seconds if seconds is not None else _seconds_until_http_date(value)


def _plausible_seconds(value: str | None, scale: float = 1.0) -> float | None:
    """A delta in seconds (RFC 9110's digits, a decimal fraction tolerated) within a day."""
    if not value or not _DELTA_SECONDS.fullmatch(value.strip()):
        return None
    seconds = float(value.strip()) / scale
    return seconds if math.isfinite(seconds) and seconds <= MAX_RETRY_AFTER_S else None


def _seconds_until_http_date(value: str) -> float | None:
    """Seconds until an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`); None if it is not one, is
    in the past, or lies more than a day ahead."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the RFC says UTC
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return seconds if 0 < seconds <= MAX_RETRY_AFTER_S else None


def _status_hint(target: HttpTarget, status: int) -> str:
    if status in (401, 403):
        where = f"Check {target.key_env_var}" if target.key_env_var else "Check the apiKey"
        return f"{where}: the key was rejected."
    if status == 402:
        return f"Add credits to your {target.label} account."
    if status == 404:
        return "Check the model name and the provider's baseUrl."
    if status == 429:
        return "Rate limited: wait a little, or lower the request rate."
    if status >= 500:
        return f"{target.label} is having trouble; try again shortly."
    return "Check the request (model, max tokens, options)."


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
