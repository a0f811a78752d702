"""Retries, backoff, the fallback chain, and no silent restart once the answer has started."""

from __future__ import annotations

import time

import pytest

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.errors import ExitCode, ModelNotFoundError
from agentic_onnx.router.errors import AllProvidersFailedError, StreamInterruptedError
from agentic_onnx.router.fallback import RetryPolicy

from .fake_cloud import Behaviour, status
from .router_support import (  # noqa: F401 - fixtures
    TINY,
    anthropic_fake,
    cloud_keys,
    hybrid_config,
    openrouter_fake,
    route,
    write_config,
)

pytestmark = pytest.mark.usefixtures("cloud_keys")


@pytest.fixture
def config(tmp_path, anthropic_fake, openrouter_fake):
    return write_config(tmp_path, hybrid_config(anthropic_fake, openrouter_fake))


def outcomes(routed) -> list[tuple[str, str, int]]:
    return [(a.provider, a.outcome, a.tries) for a in routed.attempts]


def test_first_provider_answers_when_healthy(config, anthropic_fake, openrouter_fake):
    routed = route(config)
    assert routed.response.text == "Hello from the cloud."
    assert routed.response.provider == "anthropic"
    assert outcomes(routed) == [("anthropic", "ok", 1)]
    assert (anthropic_fake.count, openrouter_fake.count) == (1, 0)


def test_chain_order_after_retries_are_exhausted(config, anthropic_fake, openrouter_fake):
    anthropic_fake.script(status(500), status(500), status(500))
    notices: list[str] = []
    routed = route(config, notices=notices)
    assert outcomes(routed) == [("anthropic", "failed", 3), ("openrouter", "ok", 1)]
    assert routed.response.provider == "openrouter"
    assert (anthropic_fake.count, openrouter_fake.count) == (3, 1)
    assert any("trying openrouter" in notice for notice in notices)


def test_chain_reaches_the_local_model_last(config, anthropic_fake, openrouter_fake):
    anthropic_fake.script(status(401))
    openrouter_fake.script(status(402))
    routed = route(config)
    assert outcomes(routed) == [("anthropic", "failed", 1), ("openrouter", "failed", 1),
                                ("onnx", "ok", 1)]
    assert routed.response.provider == "onnx" and routed.response.model == TINY.name
    assert routed.attempts[0].status == 401 and routed.attempts[1].status == 402


@pytest.mark.parametrize("code", [400, 401, 403])
def test_client_errors_are_not_retried(config, anthropic_fake, code):
    anthropic_fake.script(status(code))
    routed = route(config)
    assert anthropic_fake.count == 1
    assert routed.attempts[0].tries == 1 and routed.attempts[0].status == code


def test_retries_are_bounded_in_count_and_backoff_grows(config, anthropic_fake):
    anthropic_fake.default = status(529)
    slept: list[float] = []
    routed = route(config, sleep=slept.append)
    assert anthropic_fake.count == 3  # one try + maxRetries (2)
    assert len(slept) == 2
    # base 1 ms, max 4 ms: retry n waits min(4, 1 * 2^n) ms plus up to 50% jitter
    assert 0.001 <= slept[0] <= 0.0015 and 0.002 <= slept[1] <= 0.003
    assert routed.response.provider == "openrouter"


def test_retries_are_bounded_in_time(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake,
                         retry={"baseDelayMs": 20, "maxDelayMs": 40, "maxRetryAfterMs": 50})
    anthropic_fake.default = status(503)
    started = time.monotonic()
    route(write_config(tmp_path, data))
    elapsed = time.monotonic() - started
    policy = RetryPolicy(0.02, 0.04, 0.05)
    assert anthropic_fake.count == 3
    assert 0.02 + 0.04 <= elapsed < policy.worst_case_s(2) + 1.5  # waited, but boundedly


def test_retry_after_is_honoured(config, anthropic_fake):
    anthropic_fake.script(status(429, retry_after="0.25"))
    slept: list[float] = []
    routed = route(config, sleep=slept.append)
    assert slept == [0.25]
    assert outcomes(routed) == [("anthropic", "ok", 2)]


def test_a_retry_after_beyond_the_bound_moves_on_at_once(config, anthropic_fake, openrouter_fake):
    anthropic_fake.script(status(429, retry_after="3600"))
    slept: list[float] = []
    routed = route(config, sleep=slept.append)
    assert slept == [] and anthropic_fake.count == 1
    assert "3600s" in routed.attempts[0].error
    assert routed.response.provider == "openrouter"


def test_an_error_event_before_any_text_is_retried(config, anthropic_fake):
    anthropic_fake.script(Behaviour("error_event"))
    routed = route(config)
    assert routed.response.text == "Hello from the cloud."
    assert outcomes(routed) == [("anthropic", "ok", 2)]


def test_a_hang_times_out_and_falls_back(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake)
    data["providers"]["anthropic"].update(timeout=200, maxRetries=1)
    anthropic_fake.default = Behaviour("hang", hang_s=5)
    started = time.monotonic()
    routed = route(write_config(tmp_path, data))
    assert time.monotonic() - started < 2.0
    assert anthropic_fake.count == 2 and "timed out" in routed.attempts[0].error
    assert routed.response.provider == "openrouter"


@pytest.mark.parametrize("fault", ["midstream_error", "hang_midstream", "truncate"])
def test_no_silent_restart_after_text_reached_the_user(tmp_path, anthropic_fake, openrouter_fake,
                                                         fault):
    data = hybrid_config(anthropic_fake, openrouter_fake)
    data["providers"]["anthropic"]["timeout"] = 300
    anthropic_fake.script(Behaviour(fault, hang_s=3))
    with pytest.raises(StreamInterruptedError, match="after the answer had started") as caught:
        route(write_config(tmp_path, data), max_tokens=8)
    assert caught.value.exit_code == ExitCode.PROVIDER_ERROR
    assert anthropic_fake.count == 1 and openrouter_fake.count == 0


def test_partial_text_is_kept_when_the_stream_breaks(config, anthropic_fake):
    from agentic_onnx.core.generation.options import build_options
    from agentic_onnx.router.execute import route_and_stream
    from agentic_onnx.router.rules import RouteFlags

    anthropic_fake.script(Behaviour("midstream_error"))
    routed = route_and_stream(ChatRequest.of([{"role": "user", "content": "hi"}]), RouteFlags(),
                              config_path=str(config))
    with pytest.raises(StreamInterruptedError):
        routed.response.consume()
    assert routed.response.text == "Hello"
    assert [a.outcome for a in routed.attempts] == ["interrupted"]


def test_prompt_longer_than_the_local_context_goes_to_the_next_provider(
        tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake, defaultProvider="onnx",
                         fallbackChain=["onnx", "openrouter"])
    long_task = "tell me about the weather " * 200  # well past the fixture's 512-token context
    routed = route(write_config(tmp_path, data), task=long_task)
    assert [a.provider for a in routed.attempts] == ["onnx", "openrouter"]
    assert "context" in routed.attempts[0].error
    assert routed.response.provider == "openrouter" and openrouter_fake.count == 1


def test_one_candidate_keeps_its_own_error_and_exit_code(tmp_path, anthropic_fake):
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    with pytest.raises(ModelNotFoundError) as caught:
        route(config, provider="onnx", model=str(tmp_path / "no-such-model"))
    assert caught.value.exit_code == ExitCode.MODEL_NOT_FOUND


def test_every_provider_failing_lists_each(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake,
                         fallbackChain=["anthropic", "openrouter"])
    anthropic_fake.default = status(401)
    openrouter_fake.default = status(400)
    with pytest.raises(AllProvidersFailedError) as caught:
        route(write_config(tmp_path, data))
    message = caught.value.message
    assert "anthropic: Anthropic returned HTTP 401" in message
    assert "openrouter: OpenRouter returned HTTP 400" in message
    assert caught.value.exit_code == ExitCode.PROVIDER_ERROR


def test_explicit_provider_has_no_fallback(config, anthropic_fake, openrouter_fake):
    anthropic_fake.default = status(500)
    with pytest.raises(Exception, match="HTTP 500"):
        route(config, provider="anthropic")
    assert openrouter_fake.count == 0 and anthropic_fake.count == 3


# -- a Retry-After the router cannot use is no Retry-After -------------------------------------

UNUSABLE_RETRY_AFTER = ["soon", "garbage!", "-5", "nan", "1e999", "99999999999",
                        "Wed, 21 Oct 2015 07:28:00 GMT",  # an HTTP date in the past
                        "Fri, 31 Dec 99999 23:59:59 GMT"]  # a year Python cannot hold


@pytest.mark.parametrize("value", UNUSABLE_RETRY_AFTER)
def test_an_unusable_retry_after_means_backoff_then_the_next_provider(config, anthropic_fake,
                                                                     openrouter_fake, value):
    anthropic_fake.default = status(429, retry_after=value)
    slept: list[float] = []
    routed = route(config, sleep=slept.append)
    assert anthropic_fake.count == 3  # retried with our own backoff, as without a header
    assert 0.001 <= slept[0] <= 0.0015 and 0.002 <= slept[1] <= 0.003
    assert outcomes(routed) == [("anthropic", "failed", 3), ("openrouter", "ok", 1)]


def test_an_http_date_retry_after_is_honoured():
    from email.utils import formatdate

    from agentic_onnx.router.providers.http import retry_after_seconds

    soon = retry_after_seconds({"retry-after": formatdate(time.time() + 20, usegmt=True)})
    assert soon is not None and 15 < soon <= 20
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25


def test_retry_after_soon_through_the_console_script(tmp_path, anthropic_fake, openrouter_fake):
    from agentic_onnx.core.errors import ExitCode

    from .conftest import run_cli, run_cli_process
    from .router_support import ANTHROPIC_KEY, OPENROUTER_KEY

    keys = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    data = hybrid_config(anthropic_fake, openrouter_fake, fallbackChain=["anthropic", "openrouter"])
    config = str(write_config(tmp_path, data))
    anthropic_fake.default = status(429, retry_after="soon")
    result = run_cli_process("run", "--config", config, "--task", "Hi", env=keys)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello from the cloud." and "Traceback" not in result.stderr
    assert (anthropic_fake.count, openrouter_fake.count) == (3, 1)

    openrouter_fake.default = status(429, retry_after="soon")
    result = run_cli("run", "--config", config, "--task", "Hi", env=keys)
    assert result.returncode == ExitCode.PROVIDER_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()][-1].startswith("Error: ")
