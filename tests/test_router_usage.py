"""Cost arithmetic, the SQLite usage log and its migrations, `usage`, and `router benchmark`."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.generation.events import Usage
from agentic_onnx.router import usage as usage_log
from agentic_onnx.router.benchmark import percentile, run_benchmark
from agentic_onnx.core.generation.options import build_options
from agentic_onnx.router.costs import FREE, ModelPrice, cost_usd, lookup_price

from .fake_cloud import ok, status
from .router_support import (  # noqa: F401 - fixtures
    TINY,
    anthropic_fake,
    cloud_keys,
    hybrid_config,
    openrouter_fake,
    route,
    write_config,
)


def test_price_lookup():
    assert lookup_price("anthropic", "claude-sonnet-4-5") == ModelPrice(3.0, 15.0, 4)
    assert lookup_price("anthropic", "claude-sonnet-4-5-20250929").input == 3.0  # dated id
    assert lookup_price("anthropic", "claude-unknown-9") is None
    assert lookup_price("onnx", "anything") == FREE
    assert lookup_price("openai", "my-model", local=True) == FREE
    override = {"my-model": ModelPrice(0.5, 1.0)}
    assert lookup_price("openai", "my-model", override) == ModelPrice(0.5, 1.0)


def test_cost_arithmetic():
    price = ModelPrice(3.0, 15.0)
    assert cost_usd(price, Usage(1000, 500)) == pytest.approx(0.0105)
    assert cost_usd(price, Usage(1_000_000, 0)) == pytest.approx(3.0)
    assert cost_usd(FREE, Usage(10**6, 10**6)) == 0.0
    assert cost_usd(None, Usage(1, 1)) is None


@pytest.fixture
def config(tmp_path, anthropic_fake, openrouter_fake, cloud_keys):
    return write_config(tmp_path, hybrid_config(anthropic_fake, openrouter_fake))


def test_response_cost_from_the_price_table(config):
    routed = route(config)
    assert routed.response.model == "claude-sonnet-4-5"
    assert routed.response.cost_usd == pytest.approx((12 * 3.0 + 4 * 15.0) / 1e6)
    assert routed.to_json()["cost_usd"] == pytest.approx(0.000096)


def test_openrouter_reported_cost_wins(config, openrouter_fake):
    openrouter_fake.script(ok(cost=0.0123))
    routed = route(config, provider="openrouter")
    assert routed.response.cost_usd == pytest.approx(0.0123)


def test_unknown_price_is_null_not_zero(config):
    routed = route(config, provider="anthropic", model="claude-experimental-x")
    assert routed.response.cost_usd is None


def test_every_request_is_logged_without_the_prompt(config, anthropic_fake):
    route(config, task="my secret plans")
    route(config, provider="onnx", task="local question")
    anthropic_fake.script(status(400))
    with pytest.raises(Exception):
        route(config, provider="anthropic", task="bad request")
    rows = usage_log.rows()
    assert [(r["provider"], r["outcome"]) for r in rows] == [
        ("anthropic", "ok"), ("onnx", "ok"), ("anthropic", "error")]
    cloud, local, failed = rows
    assert (cloud["model"], cloud["rule"], cloud["prompt_tokens"], cloud["completion_tokens"]) == \
        ("claude-sonnet-4-5", "defaultProvider", 12, 4)
    assert cloud["cost_usd"] == pytest.approx(0.000096) and cloud["local"] == 0
    assert cloud["latency_ms"] > 0 and cloud["ttft_ms"] > 0 and cloud["attempts"] == 1
    assert (local["model"], local["local"], local["cost_usd"]) == (TINY.name, 1, 0.0)
    assert "HTTP 400" in failed["error"] and failed["cost_usd"] is None
    assert all(r["prompt"] is None for r in rows)
    database = usage_log.usage_db_path().read_bytes()
    assert b"my secret plans" not in database and b"local question" not in database


def test_log_prompts_stores_the_prompt(config):
    from agentic_onnx.router.execute import route_and_stream
    from agentic_onnx.router.rules import RouteFlags

    routed = route_and_stream(ChatRequest.of([{"role": "user", "content": "keep me"}],
                                             options=build_options(max_tokens=4)),
                              RouteFlags(), config_path=str(config),
                              log_prompts=True)
    routed.response.consume()
    assert usage_log.rows()[-1]["prompt"] == "keep me"


def test_migrations_are_numbered_and_upgrade_an_old_database(tmp_path):
    path = tmp_path / "usage.db"
    with sqlite3.connect(path) as old:  # a database written by schema version 1
        old.executescript(usage_log.MIGRATIONS[0][1] + "PRAGMA user_version = 1;")
        old.execute("INSERT INTO requests (ts, command, outcome) VALUES ('t', 'run', 'ok')")
    with usage_log.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == usage_log.SCHEMA_VERSION
        columns = {row[1] for row in connection.execute("PRAGMA table_info(requests)")}
    assert "prompt" in columns
    assert len(usage_log.rows(path=path)) == 1
    assert [number for number, _ in usage_log.MIGRATIONS] == list(
        range(1, len(usage_log.MIGRATIONS) + 1))


def test_usage_command_summarises_and_counts_savings(config):
    from agentic_onnx.cli.app import app

    route(config)
    local = route(config, provider="onnx")
    result = CliRunner().invoke(app, ["usage", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lines = {(line["provider"], line["model"]): line for line in summary["lines"]}
    cloud_line = lines[("anthropic", "claude-sonnet-4-5")]
    local_line = lines[("onnx", TINY.name)]
    assert cloud_line["cost_usd"] == pytest.approx(0.000096) and cloud_line["saved_usd"] == 0
    usage = local.response.usage
    expected_saving = (usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1e6
    assert local_line["saved_usd"] == pytest.approx(expected_saving, abs=1e-6)
    assert summary["totals"]["requests"] == 2
    human = CliRunner().invoke(app, ["usage"])
    assert human.exit_code == 0 and "anthropic" in human.stdout


def test_router_benchmark_percentiles_are_the_benchmarks_own():
    from agentic_onnx.core.bench import stats

    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == stats.percentile(values, 50) == 10.5
    assert percentile(values, 95) == pytest.approx(19.05)  # rank 18.05 of 0..19: 19 + 0.05
    assert percentile([], 95) is None


def test_router_benchmark(config, anthropic_fake):
    anthropic_fake.script(ok(), status(401), ok())
    results = run_benchmark(["anthropic", f"onnx:{TINY}"], "Hello", 3, build_options(max_tokens=4),
                            config_path=str(config))
    cloud, local = (result.to_json() for result in results)
    assert cloud["success_rate"] == pytest.approx(2 / 3, abs=1e-4) and anthropic_fake.count == 3
    assert cloud["cost_per_million_tokens_usd"] == pytest.approx(0.000096 / 16 * 1e6)
    assert cloud["latency_ms_p95"] >= cloud["latency_ms_p50"] > 0
    assert any("HTTP 401" in error for error in cloud["errors"])
    assert local["success_rate"] == 1.0 and local["cost_per_million_tokens_usd"] == 0.0
    assert local["tokens_per_s_p50"] > 0 and local["model"] == TINY.name
    assert [r["command"] for r in usage_log.rows()] == ["benchmark"] * 6


def test_router_benchmark_command_json(config):
    from agentic_onnx.cli.app import app

    result = CliRunner().invoke(app, ["router", "benchmark", "--providers", "anthropic,openrouter",
                                      "--task", "Hi", "-n", "2", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["provider"] for r in data["results"]] == ["anthropic", "openrouter"]
    assert all(r["success_rate"] == 1.0 for r in data["results"])


# -- a usage.db that cannot be used ------------------------------------------------------------


def _damage(how: str) -> None:
    path = usage_log.usage_db_path()
    if how == "directory":
        path.mkdir(parents=True)
        return
    if how == "garbage":
        path.write_bytes(b"\x00not a database\xff" * 300)
        return
    usage_log.log_request(usage_log.UsageRecord("run", "onnx", "m", None, False, True, 1, 1, 0.0,
                                                1.0, 1.0, "ok", prompt="x" * 5000))
    path.write_bytes(path.read_bytes()[:6000])  # truncated: a crash, a full disk, a bad copy


DAMAGE = ["garbage", "truncated", "directory"]


@pytest.mark.parametrize("how", DAMAGE)
def test_usage_with_a_broken_log_is_one_line(how):
    from .conftest import run_cli, run_cli_process

    _damage(how)
    result = (run_cli_process if how == "garbage" else run_cli)("usage")  # once, a real process
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: Could not use the usage log")
    assert str(usage_log.usage_db_path()) in line and "move it aside" in line


@pytest.mark.parametrize("how", DAMAGE)
def test_run_keeps_working_with_a_broken_log(how):
    from .conftest import run_cli

    _damage(how)
    result = run_cli("run", "--model", str(TINY), "--task", "hi", "--max-tokens", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "usage log" in line]
    assert len(warnings) == 1 and str(usage_log.usage_db_path()) in warnings[0]


@pytest.mark.parametrize("how", DAMAGE)
def test_performance_mode_treats_a_broken_log_as_no_history(tmp_path, anthropic_fake,
                                                            openrouter_fake, cloud_keys, how):
    _damage(how)
    data = hybrid_config(anthropic_fake, openrouter_fake,
                         routing={"mode": "performance-optimized", "rules": []})
    notices: list[str] = []
    routed = route(write_config(tmp_path, data), notices=notices)
    assert routed.response.text
    about_history = [n for n in notices if "no latency history" in n]
    assert len(about_history) == 1 and "\n" not in about_history[0]
    assert str(usage_log.usage_db_path()) in about_history[0]
