"""The service's residency rules (server/residency.py) and small server pieces whose behaviour
the docs promise: keep-alive parsing, the load grace, LRU under the budget, who answered."""

from __future__ import annotations

import json
import os

import pytest

from agentic_onnx.core.errors import UsageError
from agentic_onnx.server.residency import (
    LOAD_GRACE_S,
    Resident,
    expired,
    parse_keep_alive,
    to_unload,
)


def test_keep_alive_durations():
    assert [parse_keep_alive(v) for v in ("5m", "30s", "1h", "300", "250ms", 0, 12.5)] == \
        [300.0, 30.0, 3600.0, 300.0, 0.25, 0.0, 12.5]
    assert parse_keep_alive("-1") is None and parse_keep_alive(-5) is None  # forever
    for bad in ("soon", "5 minutes", True, "1e999", float("nan")):
        with pytest.raises(UsageError):
            parse_keep_alive(bad)


def test_a_model_just_loaded_waits_for_its_request_whatever_keep_alive_says():
    fresh = Resident("m", 1, last_used=100.0, keep_alive_s=0.0, served=False)
    used = Resident("n", 1, last_used=100.0, keep_alive_s=0.0, served=True)
    assert expired([fresh, used], now=100.0) == ["n"]
    assert expired([fresh], now=100.0 + LOAD_GRACE_S) == ["m"]
    busy = Resident("b", 1, last_used=0.0, keep_alive_s=0.0, busy=True)
    kept = Resident("k", 1, last_used=0.0, keep_alive_s=None)
    assert expired([busy, kept], now=1e9) == []


def test_the_least_recently_used_idle_models_make_room():
    residents = [Resident("old", 4, 1.0, None), Resident("busy", 4, 0.0, None, busy=True),
                 Resident("new", 4, 3.0, None)]
    assert to_unload(residents, 2, budget_bytes=None) == []
    assert to_unload(residents, 2, budget_bytes=14) == []
    assert to_unload(residents, 3, budget_bytes=14) == ["old"]
    assert to_unload(residents, 7, budget_bytes=14) == ["old", "new"]
    with pytest.raises(UsageError, match="taken by models in use"):
        to_unload(residents, 11, budget_bytes=14)


def test_answers_say_who_answered_and_whether_the_cache_did():
    from agentic_onnx.server.http import answered_by

    class Job:
        provider, model_name, cached = "anthropic", "claude-haiku-4-5", False

    assert answered_by(Job()) == {"x-agentic-provider": "anthropic",
                                  "x-agentic-model": "claude-haiku-4-5"}
    Job.cached = True
    assert answered_by(Job())["x-agentic-cache"] == "hit"


def test_an_anthropic_tool_call_whose_arguments_are_not_json_keeps_them():
    from agentic_onnx.server.anthropic_api import _input

    assert _input('{"city": "Oslo"}') == {"city": "Oslo"}
    assert _input("") == {}
    assert _input('{"city": ') == {"_unparsed_arguments": '{"city": '}
    assert _input("[1]") == {"_unparsed_arguments": "[1]"}


def test_a_second_service_is_refused(hermetic_env):
    """`serve --service` beside a running service (its state file names a live process: this
    test's own) is a usage error, before anything listens."""
    import psutil

    from .conftest import run_cli

    (hermetic_env / "service.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:9", "pid": os.getpid(), "token": "t" * 43,
         "started": psutil.Process().create_time()}))
    result = run_cli("serve", "--service")
    assert result.returncode == 2
    assert "A service is already running at http://127.0.0.1:9" in result.stderr
