"""The resident service (issue 13): `service start|stop|status`, discovery by `run`, `ps`,
`stop MODEL`, keep-alive, the memory budget, a stale state file, and the token. Real processes:
the service is `agentic-onnx serve --service` in the background."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from .conftest import MODELS, run_cli, run_cli_process
from .server_support import SLOW_DECODE, http

PHI3 = str(MODELS / "tiny-phi3-fp32")
QWEN = str(MODELS / "tiny-qwen2-fp32")
ASK = ["run", "-t", "Say hello.", "--max-tokens", "8", "--json"]


def start(*options: str, env: dict[str, str] | None = None) -> dict:
    result = run_cli_process("service", "start", "--threads", "1", *options, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def service():
    """A service of this test's home; stopped (and its state file gone) afterwards."""
    yield start
    stopped = run_cli("service", "stop", "--json")
    assert stopped.returncode == 0, stopped.stderr


def state_file(home) -> dict:  # noqa: ANN001
    return json.loads((home / "service.json").read_text(encoding="utf-8"))


def ps() -> list[dict]:
    result = run_cli("ps", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["models"]


def wait_until(predicate, what: str, limit_s: float = 60.0):  # noqa: ANN001, ANN201
    """Poll `predicate` until it holds (bounded): for what the service does on its own thread."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_uses_a_running_service_and_answers_the_same(service, hermetic_env):
    alone = json.loads(run_cli(*ASK, "-m", PHI3).stdout)
    started = service()
    assert started["started"] is True and started["url"].startswith("http://127.0.0.1:")
    saved = state_file(hermetic_env)
    assert stat.S_IMODE((hermetic_env / "service.json").stat().st_mode) == 0o600
    assert saved["pid"] == started["pid"] and len(saved["token"]) >= 32
    assert "token" not in started  # never printed
    first = run_cli(*ASK, "-m", PHI3)
    assert first.returncode == 0, first.stderr
    via = json.loads(first.stdout)
    assert via["service"] == started["url"]
    assert (via["text"], via["usage"], via["finish_reason"]) == \
        (alone["text"], alone["usage"], alone["finish_reason"])  # greedy: the same answer
    again = json.loads(run_cli(*ASK, "-m", PHI3).stdout)
    assert again["timings"]["load_s"] == 0.0  # resident now
    assert json.loads(run_cli(*ASK, "-m", PHI3, "--no-service").stdout)["service"] is None
    from agentic_onnx.router import usage as usage_log

    assert [row["command"] for row in usage_log.rows()] == ["run"] * 4  # one row each, not two
    [loaded] = ps()
    assert loaded["id"] == "tiny-phi3-fp32" and loaded["execution_provider"] == "cpu"
    assert loaded["keep_alive_s"] == 300.0 and 0 < loaded["unloads_in_s"] <= 300
    stopped = run_cli("stop", "tiny-phi3-fp32", "--json")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["unloaded"] is True
    assert ps() == []
    missing = run_cli("stop", "tiny-phi3-fp32")
    assert missing.returncode == 3 and "not served" in missing.stderr


def test_keep_alive_zero_unloads_after_the_request(service):
    service("--keep-alive", "0")
    assert run_cli(*ASK, "-m", PHI3).returncode == 0
    wait_until(lambda: ps() == [], "the model to unload")


def test_a_full_memory_budget_unloads_the_least_recently_used_model(service):
    """The budget holds one tiny model's weights, not two: loading the second unloads the first."""
    sizes = [sum(p.stat().st_size for p in (MODELS / name).iterdir()
                 if p.name.endswith((".onnx", ".onnx.data")))
             for name in ("tiny-phi3-fp32", "tiny-qwen2-fp32")]
    budget_gb = (max(sizes) * 1.5) / 2**30
    assert budget_gb * 2**30 < sum(sizes)  # precondition: both do not fit
    service("--max-memory-gb", f"{budget_gb:.9f}")
    assert run_cli(*ASK, "-m", PHI3).returncode == 0
    assert [model["id"] for model in ps()] == ["tiny-phi3-fp32"]
    assert run_cli(*ASK, "-m", QWEN).returncode == 0
    assert [model["id"] for model in ps()] == ["tiny-qwen2-fp32"]


def test_requests_without_the_token_are_refused(service, hermetic_env):
    url = service()["url"]
    token = state_file(hermetic_env)["token"]
    assert http("GET", f"{url}/api/ps")[0] == 401
    assert http("GET", f"{url}/api/ps", headers={"authorization": "Bearer wrong"})[0] == 401
    body = {"model": "tiny-phi3-fp32", "messages": [{"role": "user", "content": "hi"}]}
    assert http("POST", f"{url}/v1/chat/completions", body)[0] == 401
    status, _, answer = http("POST", f"{url}/api/load", {"model": PHI3},
                             headers={"authorization": f"Bearer {token}"})
    assert status == 200 and answer["model"] == "tiny-phi3-fp32" and answer["load_s"] > 0
    assert http("GET", f"{url}/api/ps", headers={"authorization": f"Bearer {token}"})[0] == 200


def test_a_stale_state_file_is_ignored_and_removed(hermetic_env):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (hermetic_env / "service.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:9", "pid": int(gone.stdout), "token": "x" * 43}))
    result = run_cli(*ASK, "-m", PHI3)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["service"] is None
    assert not (hermetic_env / "service.json").exists()
    assert json.loads(run_cli("service", "status", "--json").stdout)["running"] is False


def test_ctrl_c_of_an_attached_run_cancels_its_request_in_the_service(service, hermetic_env):
    """A slowed decode keeps the request running; Ctrl-C of `run` closes its stream and the
    service stops generating (its worker counts a cancelled request)."""
    service(env={"PYTHONPATH": str(SLOW_DECODE), "AGENTIC_TEST_DECODE_DELAY_S": "0.05"})
    run = subprocess.Popen([sys.executable, "-m", "agentic_onnx", "run", "-m", PHI3, "-t", "Hi",
                            "--max-tokens", "400"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=os.environ.copy())
    wait_until(lambda: any(model["running"] for model in ps()), "the request to run")
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130
    wait_until(lambda: all(model["cancelled"] == 1 and not model["running"] for model in ps()),
               "the service to cancel the request")


def test_chat_and_onnx_test_use_the_service_too(service):
    """The same greedy chat (two turns) and `onnx test` answers in process and through the
    service; the service keeps the chat's history cached between turns."""
    chat = ["chat", "-m", PHI3, "--max-tokens", "6"]
    turns = "Hello there.\nAnd again?\n"
    alone = run_cli(*chat, "--no-service", stdin=turns)
    tested_alone = json.loads(run_cli("onnx", "test", "-m", PHI3, "--json").stdout)
    url = service()["url"]
    via = run_cli(*chat, stdin=turns)
    assert via.returncode == 0, via.stderr
    assert f"Using the resident service at {url}" in via.stderr
    assert via.stdout == alone.stdout and via.stdout.strip()
    tested = run_cli("onnx", "test", "-m", PHI3, "--json")
    assert tested.returncode == 0, tested.stderr
    result = json.loads(tested.stdout)
    assert (result["text"], result["completion_tokens"], result["model"]) == \
        (tested_alone["text"], tested_alone["completion_tokens"], "tiny-phi3-fp32")
    from agentic_onnx.router import usage as usage_log

    rows = [row for row in usage_log.rows() if row["command"] == "chat"]
    assert len(rows) == 4  # two turns alone, two through the service: one row each
    assert [model["id"] for model in ps()] == ["tiny-phi3-fp32"]


def test_a_chat_through_the_service_drops_the_oldest_turns_when_the_context_is_full(service):
    """tiny-phi3's context holds 512 tokens: the third long turn does not fit with the first
    two, so the service refuses it before generating and the oldest exchange is dropped."""
    service()
    long_turn = " ".join(["words about the weather"] * 14)  # ~200 tiny-phi3 tokens each
    result = run_cli("chat", "-m", PHI3, "--max-tokens", "4", stdin=f"{long_turn}\n" * 3)
    assert result.returncode == 0, result.stderr
    assert "The context is full: dropped the 2 oldest messages" in result.stderr


def test_a_request_may_set_its_own_keep_alive(service, hermetic_env):
    url = service()["url"]  # the service's default: 5 minutes
    key = {"authorization": f"Bearer {state_file(hermetic_env)['token']}"}
    body = {"model": PHI3, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert http("POST", f"{url}/v1/chat/completions", body, headers=key)[0] == 200
    [kept] = ps()
    assert kept["keep_alive_s"] == 300.0
    status, _, answer = http("POST", f"{url}/v1/chat/completions",
                             {**body, "keep_alive": "0"}, headers=key)
    assert status == 200, answer
    wait_until(lambda: ps() == [], "the model to unload after its request")
    bad = http("POST", f"{url}/v1/chat/completions", {**body, "keep_alive": "soon"}, headers=key)
    assert bad[0] == 400 and "keep_alive" in bad[2]["error"]["message"]


def test_concurrent_greedy_requests_equal_the_same_requests_alone(service, hermetic_env):
    """Requests to one model queue (no batching on the CPU: docs/performance.md), so answers
    under concurrency are those of the same requests alone."""
    from concurrent.futures import ThreadPoolExecutor

    url = service()["url"]
    key = {"authorization": f"Bearer {state_file(hermetic_env)['token']}"}
    prompts = ["Say hello.", "Name a colour.", "Count to three.", "What is rain?"]

    def ask(prompt: str) -> str:
        status, _, answer = http("POST", f"{url}/v1/chat/completions", {
            "model": PHI3, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 12}, headers=key)
        assert status == 200, answer
        return answer["choices"][0]["message"]["content"]

    alone = [ask(prompt) for prompt in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def test_two_folders_of_one_name_are_two_models(service, tmp_path):
    """Folders are published under their name: a second folder of the same name is another
    model with an id of its own, never answered by the first."""
    import shutil

    first, second = tmp_path / "a" / "model", tmp_path / "b" / "model"
    shutil.copytree(PHI3, first)
    shutil.copytree(QWEN, second)
    alone = [json.loads(run_cli(*ASK, "-m", str(path), "--no-service").stdout)["text"]
             for path in (first, second)]
    service()
    via = [json.loads(run_cli(*ASK, "-m", str(path)).stdout) for path in (first, second)]
    assert [answer["text"] for answer in via] == alone
    ids = sorted(model["id"] for model in ps())
    assert len(ids) == 2 and ids[0] == "model" and ids[1].startswith("model-")


def test_the_services_own_api_takes_only_its_token(hermetic_env):
    """An --api-key the service was started with (from the environment) opens the chat routes,
    not `/api/*`, which loads folders by path and unloads models."""
    started = start(env={"AGENTIC_ONNX_API_KEY": "another-key-0123456789"})
    try:
        url, token = started["url"], state_file(hermetic_env)["token"]
        other = {"authorization": "Bearer another-key-0123456789"}
        assert http("POST", f"{url}/api/load", {"model": PHI3}, headers=other)[0] == 401
        status, _, answer = http("POST", f"{url}/api/load", {"model": PHI3, "keep_alive": 1e999},
                                 headers={"authorization": f"Bearer {token}"})
        assert status == 400 and "finite" in answer["error"]["message"]
    finally:
        assert run_cli("service", "stop").returncode == 0


def test_a_pid_that_is_not_the_services_process_is_not_the_service(hermetic_env):
    """A state file whose pid now belongs to another process (here: this test's) is stale."""
    from agentic_onnx.router.service import discover

    (hermetic_env / "service.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:9", "pid": os.getpid(), "token": "x" * 43, "started": 1.0}))
    assert discover() is None
    assert not (hermetic_env / "service.json").exists()
