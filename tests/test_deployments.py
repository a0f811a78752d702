"""Deployments (router/deployments.py) and rate limits (router/rate_limits.py): balancing by
strategy, the circuit breaker's cooldown and half-open probe, failover to another deployment,
privacy per deployment (loopback or trustedHosts only), and requests/tokens per minute, first as
units on a fake clock, then through route_and_stream against loopback fake servers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agentic_onnx.router import deployments, rate_limits
from agentic_onnx.router.deployments import (
    BreakerSettings,
    DeploymentPool,
    Endpoint,
    NoDeploymentError,
)
from agentic_onnx.router.errors import PrivacyError, ProviderError
from agentic_onnx.router.rate_limits import Limit, RateLimitedError, RateLimiter

from .fake_cloud import FakeOpenAI, status
from .router_support import FAST_RETRY, TINY, route, write_config
from .server_support import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoints(*names: str, **fields: Any) -> list[Endpoint]:
    return [Endpoint("pool", f"http://{name}", **fields) for name in names]


def pool(clock: Clock | None = None, limiter: RateLimiter | None = None,
         seed: int = 7) -> DeploymentPool:
    clock = clock or Clock()
    return DeploymentPool(clock=clock, limiter=limiter or RateLimiter(clock, history=lambda _: []),
                          rng=random.Random(seed))


BREAKER = BreakerSettings(threshold=2, cooldown_s=10.0)


# -- strategies ----------------------------------------------------------------------------------

def test_least_outstanding_spreads_requests_in_flight_and_takes_turns_when_idle():
    balancer, three = pool(), endpoints("a", "b", "c")
    leases = [balancer.acquire(three, "least-outstanding", BREAKER) for _ in range(3)]
    assert sorted(lease.endpoint.url for lease in leases) == ["http://a", "http://b", "http://c"]
    leases[1].release(failed=False)  # b is idle again: the next request goes there
    assert balancer.acquire(three, "least-outstanding", BREAKER).endpoint.url == "http://b"
    # sequential requests on an idle pool take turns (fewest served first)
    idle, order = pool(), []
    for _ in range(6):
        lease = idle.acquire(three, "least-outstanding", BREAKER)
        order.append(lease.endpoint.url[-1])
        lease.release(failed=False)
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_least_outstanding_counts_in_flight_per_unit_of_weight():
    balancer = pool()
    heavy, light = Endpoint("pool", "http://heavy", weight=2.0), Endpoint("pool", "http://light")
    picks = [balancer.acquire([heavy, light], "least-outstanding", BREAKER).endpoint.url
             for _ in range(6)]
    assert picks.count("http://heavy") == 4 and picks.count("http://light") == 2


def test_simple_shuffle_follows_the_weights():
    balancer = pool(seed=11)
    three, one = Endpoint("pool", "http://three", weight=3.0), Endpoint("pool", "http://one")
    picks = []
    for _ in range(2000):
        lease = balancer.acquire([three, one], "simple-shuffle", BREAKER)
        picks.append(lease.endpoint.url)
        lease.release(failed=False)
    share = picks.count("http://three") / len(picks)
    assert 0.7 < share < 0.8  # 3 : 1


def test_latency_weighted_prefers_the_faster_deployment_and_tries_an_unmeasured_one():
    clock = Clock()
    balancer = pool(clock, seed=3)
    fast, slow = Endpoint("pool", "http://fast"), Endpoint("pool", "http://slow")
    for endpoint, ttft in ((fast, 0.1), (slow, 1.0)):
        lease = balancer.acquire([endpoint], "latency-weighted", BREAKER)
        clock.now += ttft
        lease.first_output()
        lease.release(failed=False)
    picks = []
    for _ in range(1100):
        lease = balancer.acquire([fast, slow], "latency-weighted", BREAKER)
        picks.append(lease.endpoint.url)
        lease.release(failed=False)  # no first output: the averages stay as measured
    assert 0.85 < picks.count("http://fast") / len(picks) < 0.95  # 10 : 1
    new = Endpoint("pool", "http://new")  # unmeasured: weighted as the fastest
    picks = [balancer.acquire([fast, new], "latency-weighted", BREAKER).endpoint.url
             for _ in range(400)]
    assert 0.4 < picks.count("http://new") / len(picks) < 0.6


# -- circuit breaker -------------------------------------------------------------------------------

def test_the_breaker_opens_after_consecutive_failures_then_lets_one_probe_through():
    clock = Clock()
    balancer = pool(clock)
    [only] = endpoints("a")
    for _ in range(2):
        balancer.acquire([only], "least-outstanding", BREAKER).release(failed=True)
    with pytest.raises(NoDeploymentError) as refused:
        balancer.acquire([only], "least-outstanding", BREAKER)
    assert refused.value.retry_after_s == 10.0 and refused.value.http_status == 503
    clock.now += 10.0  # half-open: one probe, and only one
    probe = balancer.acquire([only], "least-outstanding", BREAKER)
    with pytest.raises(NoDeploymentError):
        balancer.acquire([only], "least-outstanding", BREAKER)
    probe.release(failed=True)  # the probe failed: open again for the whole cooldown
    with pytest.raises(NoDeploymentError):
        balancer.acquire([only], "least-outstanding", BREAKER)
    clock.now += 10.0
    balancer.acquire([only], "least-outstanding", BREAKER).release(failed=False)
    assert balancer.snapshot()[0]["breaker"] == "closed"
    for _ in range(2):  # closed again: both leases at once
        balancer.acquire([only], "least-outstanding", BREAKER)


def test_an_open_deployment_is_skipped_and_a_success_resets_the_count():
    balancer, (a, b) = pool(), endpoints("a", "b")
    balancer.acquire([a], "least-outstanding", BREAKER).release(failed=True)
    balancer.acquire([a], "least-outstanding", BREAKER).release(failed=False)
    balancer.acquire([a], "least-outstanding", BREAKER).release(failed=True)
    assert balancer.snapshot()[0]["breaker"] == "closed"  # not two in a row
    balancer.acquire([a], "least-outstanding", BREAKER).release(failed=True)
    picks = {balancer.acquire([a, b], "least-outstanding", BREAKER).endpoint.url
             for _ in range(3)}
    assert picks == {"http://b"}


def test_a_disabled_breaker_never_opens():
    balancer, [only] = pool(), endpoints("a")
    off = BreakerSettings(enabled=False, threshold=1)
    for _ in range(5):
        balancer.acquire([only], "least-outstanding", off).release(failed=True)
    balancer.acquire([only], "least-outstanding", off)


def test_breaker_settings_come_from_agentic_flows_performance_keys():
    assert BreakerSettings.from_config(None) == BreakerSettings()
    assert BreakerSettings.from_config({"circuitBreaker": {"enabled": True, "threshold": 5}}) \
        == BreakerSettings(True, 5, 30.0)
    assert BreakerSettings.from_config({"circuitBreaker": {"enabled": False, "cooldownMs": 500,
                                                           "threshold": "x"}}) \
        == BreakerSettings(False, 3, 0.5)


# -- rate limits ---------------------------------------------------------------------------------

def test_a_requests_window_slides():
    clock = Clock()
    limiter = RateLimiter(clock, history=lambda _: [])
    limit, key = Limit(requests=2), ("provider", "p")
    assert limiter.try_acquire([(key, limit)]) == 0.0
    clock.now += 20
    assert limiter.try_acquire([(key, limit)]) == 0.0
    assert limiter.try_acquire([(key, limit)]) == pytest.approx(40.0)  # the first leaves at 60
    clock.now += 40
    assert limiter.try_acquire([(key, limit)]) == 0.0


def test_a_tokens_window_frees_when_enough_old_tokens_leave():
    clock = Clock()
    limiter = RateLimiter(clock, history=lambda _: [])
    limit, key = Limit(tokens=100), ("model", "p", "m")
    limiter.add_tokens([key], 60)
    clock.now += 10
    limiter.add_tokens([key], 50)
    assert limiter.wait_s(key, limit) == pytest.approx(50.0)  # 110 >= 100 until the 60 leave
    clock.now += 50
    assert limiter.wait_s(key, limit) == 0.0


def test_the_windows_start_from_the_usage_logs_last_minute():
    clock = Clock()
    now = datetime.now(timezone.utc)
    history = [("p", "m", now - timedelta(seconds=30), 40),
               ("p", "m", now - timedelta(seconds=5), 0)]
    limiter = RateLimiter(clock, history=lambda since: history)
    assert limiter.wait_s(("provider", "p"), Limit(requests=2)) == pytest.approx(30.0, abs=1)
    assert limiter.wait_s(("model", "p", "m"), Limit(tokens=40)) == pytest.approx(30.0, abs=1)
    assert limiter.wait_s(("model", "p", "other"), Limit(requests=1)) == 0.0


def test_a_deployment_at_its_limit_is_skipped_then_refused():
    clock = Clock()
    limiter = RateLimiter(clock, history=lambda _: [])
    balancer = pool(clock, limiter)
    capped = Endpoint("pool", "http://capped", limit=Limit(requests=1))
    free = Endpoint("pool", "http://free")
    assert balancer.acquire([capped, free], "least-outstanding", BREAKER).endpoint is capped
    assert balancer.acquire([capped, free], "least-outstanding", BREAKER).endpoint is free
    with pytest.raises(RateLimitedError) as refused:
        balancer.acquire([capped], "least-outstanding", BREAKER)
    assert refused.value.http_status == 429 and refused.value.retry_after_s == pytest.approx(60)


# -- through the router, against loopback fakes ----------------------------------------------

@pytest.fixture
def fakes():
    servers = [FakeOpenAI().start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def pool_config(urls: list[Any], **entry: Any) -> dict[str, Any]:
    """A provider `pool` of deployments (a URL, or a deployment object), then the local model."""
    deployments_ = [url if isinstance(url, dict) else {"baseUrl": url} for url in urls]
    return {"version": "1.0", "defaultProvider": "pool", "fallbackChain": ["pool", "onnx"],
            "providers": {"onnx": {"models": {"default": str(TINY)}},
                          "pool": {"type": "openai", "deployments": deployments_, "timeout": 5000,
                                   "maxRetries": 0, "models": {"default": "served"}, **entry}},
            "routing": {"mode": "rule-based", "rules": []}, "retry": dict(FAST_RETRY)}


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


def test_a_dead_deployment_hands_the_request_to_a_live_one(tmp_path, fakes, hermetic_env):
    path = write_config(tmp_path, pool_config([dead_url(), fakes[0].base_url]))
    for _ in range(3):
        run = route(path)
        assert run.response.text == "Hello from the cloud."
        assert [a.outcome for a in run.attempts] == ["ok"]  # one provider, no fallback
        assert run.deployment == fakes[0].base_url
    assert fakes[0].count == 3
    states = {state["url"]: state for state in deployments.DEPLOYMENTS.snapshot()}
    dead = next(state for url, state in states.items() if url != fakes[0].base_url)
    assert dead["breaker"] == "open"  # 3 failures (the default threshold): left alone now
    assert dead["served"] == 3


def test_cooldown_then_a_half_open_probe_brings_a_deployment_back(tmp_path, fakes, hermetic_env,
                                                                   monkeypatch):
    clock = Clock()
    monkeypatch.setattr(deployments, "DEPLOYMENTS", pool(clock))
    broken, healthy = fakes
    broken.script(status(503), status(503))
    config = pool_config([broken.base_url, healthy.base_url])
    config["routing"]["performance"] = {"circuitBreaker": {"threshold": 2, "cooldownMs": 30000}}
    path = write_config(tmp_path, config)
    for _ in range(4):
        assert route(path).response.text == "Hello from the cloud."
    # turns: broken (503, failover), broken again (503: open), then healthy only
    assert (broken.count, healthy.count) == (2, 4)
    clock.now += 30.0  # half-open: the next request probes the broken one, which recovered
    run = route(path)
    assert run.deployment == broken.base_url and broken.count == 3
    assert {s["url"]: s["breaker"] for s in deployments.DEPLOYMENTS.snapshot()}[
        broken.base_url] == "closed"


def test_a_private_request_goes_only_to_local_deployments(tmp_path, fakes, hermetic_env):
    local, remote = fakes
    path = write_config(tmp_path, pool_config([{"baseUrl": local.base_url, "local": True},
                                               {"baseUrl": remote.base_url, "local": False}]))
    for _ in range(3):
        run = route(path, privacy="high")
        assert run.deployment == local.base_url
    assert (local.count, remote.count) == (3, 0)
    for _ in range(2):
        route(path)  # a normal request may go to either: the one that served fewest
    assert remote.count == 2 and local.count == 3
    from agentic_onnx.router.usage import rows

    assert [row["local"] for row in rows()] == [1, 1, 1, 0, 0]  # the deployment's, each time


def test_a_private_request_no_local_deployment_can_take_fails_without_sending(tmp_path, fakes,
                                                                              hermetic_env):
    _, remote = fakes
    config = pool_config([{"baseUrl": dead_url(), "local": True},
                          {"baseUrl": remote.base_url, "local": False}])
    config["providers"]["onnx"]["models"]["default"] = str(tmp_path / "no-such-model")
    path = write_config(tmp_path, config)
    with pytest.raises(PrivacyError):
        route(path, privacy="high")
    assert remote.count == 0


def test_a_deployment_may_name_the_model_its_own_way_and_carry_its_own_key(tmp_path, fakes,
                                                                           hermetic_env):
    path = write_config(tmp_path, pool_config(
        [{"baseUrl": fakes[0].base_url, "model": "llama3:8b", "apiKey": "node-key"}],
        apiKey="entry-key"))
    run = route(path)
    [sent] = fakes[0].requests
    assert sent["body"]["model"] == "llama3:8b"
    assert sent["headers"]["authorization"] == "Bearer node-key"
    assert run.response.model == "llama3:8b"


def test_local_deployments_must_be_on_loopback_or_a_trusted_host(tmp_path, hermetic_env):
    from agentic_onnx.core.errors import AgenticError
    from agentic_onnx.router.config_lookup import load_config

    config = pool_config([{"baseUrl": "http://10.1.2.3:8000/v1", "local": True}])
    path = write_config(tmp_path, config)
    with pytest.raises(AgenticError, match="trustedHosts"):
        load_config(str(path))
    config["trustedHosts"] = ["10.0.0.0/8"]
    path = write_config(tmp_path, config)
    loaded = load_config(str(path))
    from agentic_onnx.router.rules import is_local

    assert is_local(loaded.config, "pool")
    config["trustedHosts"] = ["gpu.lan"]  # a name trusts that name, not an address
    path = write_config(tmp_path, config)
    with pytest.raises(AgenticError, match="trustedHosts"):
        load_config(str(path))


def test_a_project_file_cannot_trust_hosts_or_mark_deployments_local(tmp_path, hermetic_env,
                                                                     monkeypatch, fakes):
    from agentic_onnx.router.config_lookup import load_config
    from agentic_onnx.router.rules import is_local

    user = pool_config([{"baseUrl": fakes[0].base_url}])
    write_config(hermetic_env, user, "config.json")
    project = {"trustedHosts": ["10.0.0.0/8"], "providers": {"pool": {"deployments": [
        {"baseUrl": fakes[0].base_url, "local": True}]}}}
    repo = tmp_path / "repo"
    repo.mkdir()
    project_file = write_config(repo, project, "agentic-flow.json")
    monkeypatch.chdir(repo)
    from agentic_onnx.router.trust import trust

    trust(project_file, project_file.read_bytes())
    loaded = load_config()
    assert loaded.project_path is not None
    assert loaded.config.trusted_hosts == []
    assert not is_local(loaded.config, "pool")
    assert any("deployments[0] local; ignored" in warning for warning in loaded.warnings)
    assert any("trustedHosts; ignored" in warning for warning in loaded.warnings)


def test_a_provider_at_its_rate_limit_moves_on_and_alone_is_a_429(tmp_path, fakes, hermetic_env):
    config = pool_config([fakes[0].base_url], rateLimit={"requestsPerMinute": 1})
    path = write_config(tmp_path, config)
    assert route(path).response.provider == "pool"
    notices: list[str] = []
    moved = route(path, notices=notices)
    assert moved.response.provider == "onnx"  # the next in the chain answered
    assert fakes[0].count == 1
    config["fallbackChain"] = ["pool"]
    path = write_config(tmp_path, config)
    with pytest.raises(RateLimitedError) as refused:
        route(path)
    assert refused.value.http_status == 429 and 1 <= refused.value.retry_after_s <= 60
    assert fakes[0].count == 1


def test_tokens_per_minute_count_what_the_answers_used(tmp_path, fakes, hermetic_env):
    # the fake reports 12 + 4 tokens per answer: the second request finds 16 >= 10
    config = pool_config([fakes[0].base_url], rateLimit={"models": {"served": {
        "tokensPerMinute": 10}}})
    config["fallbackChain"] = ["pool"]
    path = write_config(tmp_path, config)
    route(path)
    with pytest.raises(RateLimitedError, match="10 tokens/min"):
        route(path)
    assert fakes[0].count == 1


def test_one_shot_runs_count_each_other_through_the_usage_log(tmp_path, fakes, hermetic_env):
    config = pool_config([fakes[0].base_url], rateLimit={"requestsPerMinute": 1})
    config["fallbackChain"] = ["pool"]
    path = write_config(tmp_path, config)
    route(path)  # logged to the usage database
    rate_limits.LIMITER = RateLimiter()  # a new process: only the log remembers
    with pytest.raises(RateLimitedError):
        route(path)
    assert fakes[0].count == 1


def test_a_client_error_shows_the_deployment_alive_and_a_limit_is_not_a_failure():
    from agentic_onnx.router.deployments import counts_as_failure

    assert counts_as_failure(ProviderError("p", "down", status=503, retryable=True))
    assert not counts_as_failure(ProviderError("p", "bad request", status=400))
    assert not counts_as_failure(RateLimitedError("p", "1 requests/min", 5.0))


def test_max_wait_waits_for_room_instead_of_moving_on(tmp_path, hermetic_env):
    from agentic_onnx.router.config_lookup import load_config
    from agentic_onnx.router.rate_limits import ProviderLimits

    config = pool_config(["http://127.0.0.1:9/v1"],
                         rateLimit={"requestsPerMinute": 1, "maxWaitMs": 60000})
    loaded = load_config(str(write_config(tmp_path, config)))
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    limits = ProviderLimits(loaded.config, RateLimiter(clock, history=lambda _: []), sleep)
    limits.admit("pool", "served")
    clock.now += 15
    limits.admit("pool", "served")  # waits the 45 s until the first leaves the window
    assert slept == [pytest.approx(45.0)]
    config["providers"]["pool"]["rateLimit"]["maxWaitMs"] = 1000
    short = ProviderLimits(load_config(str(write_config(tmp_path, config))).config,
                           RateLimiter(clock, history=lambda _: []), sleep)
    short.admit("pool", "served")
    with pytest.raises(RateLimitedError):
        short.admit("pool", "served")  # 60 s of waiting is more than 1 s: moves on
    assert len(slept) == 1
