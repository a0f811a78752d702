"""The router through the CLI (in process, and through the real console script where the process
matters): `run` JSON, missing keys, key redaction, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentic_onnx.core.errors import ExitCode
from agentic_onnx.router.secrets import redact, register_secret

from .conftest import run_cli, run_cli_process
from .fake_cloud import Behaviour
from .router_support import (  # noqa: F401 - fixtures
    ANTHROPIC_KEY,
    OPENROUTER_KEY,
    anthropic_fake,
    hybrid_config,
    openrouter_fake,
    write_config,
)

WRONG_KEY = "sk-ant-wrong-LEAKME-5555555555"
KEYS = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}


def test_run_json_has_route_and_attempts(tmp_path, anthropic_fake, openrouter_fake):
    config = write_config(tmp_path, hybrid_config(anthropic_fake, openrouter_fake))
    anthropic_fake.script(Behaviour("status", status=503))
    anthropic_fake.default = Behaviour("status", status=503)
    result = run_cli_process("--config", str(config), "--task", "Hi", "--json", env=KEYS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["provider"], data["model"], data["text"]) == \
        ("openrouter", "anthropic/claude-sonnet-4.5", "Hello from the cloud.")
    assert data["route"] == {"rule": "defaultProvider",
                             "reason": "no rule matched: the default provider"}
    assert [(a["provider"], a["outcome"], a["tries"], a["status"]) for a in data["attempts"]] == \
        [("anthropic", "failed", 3, 503), ("openrouter", "ok", 1, None)]
    assert data["cost_usd"] == pytest.approx((12 * 3.0 + 4 * 15.0) / 1e6)
    assert "trying openrouter" in result.stderr


def test_run_streams_cloud_text_when_piped(tmp_path, anthropic_fake):
    config = write_config(tmp_path, hybrid_config(anthropic_fake))
    result = run_cli("run", "--config", str(config), "-t", "Hi", env=KEYS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from the cloud.\n"


def test_a_missing_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    result = run_cli("--provider", "openrouter", "--task", "Hi")
    assert result.returncode == ExitCode.PROVIDER_ERROR
    assert "OPENROUTER_API_KEY is not set" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("extra", [["--json"], ["--debug"], ["--json", "--debug"]])
def test_keys_never_appear_in_output_errors_logs_or_tracebacks(tmp_path, anthropic_fake, extra):
    data = hybrid_config(anthropic_fake)
    data["providers"]["anthropic"]["apiKey"] = WRONG_KEY  # a literal key in the file
    anthropic_fake.default = Behaviour("ok", echo_key=True)  # the 401 body echoes the key back
    config = write_config(tmp_path, data)
    run = run_cli_process if extra == ["--debug"] else run_cli  # a real process's traceback too
    result = run("--provider", "anthropic", "--config", str(config), "--task", "Hi", *extra)
    assert anthropic_fake.count == 1  # a 401 is not retried
    assert "HTTP 401" in result.stderr
    if "--debug" in extra:
        assert result.returncode != 0
        assert "Traceback" in result.stderr  # the traceback is there, the key is not
    else:
        assert result.returncode == ExitCode.PROVIDER_ERROR
    assert WRONG_KEY not in result.stdout + result.stderr
    from agentic_onnx.router.usage import usage_db_path

    database = usage_db_path().read_bytes()
    assert b"HTTP 401" in database and WRONG_KEY.encode() not in database


def test_keys_are_redacted_in_fallback_attempts(tmp_path, anthropic_fake, openrouter_fake):
    data = hybrid_config(anthropic_fake, openrouter_fake)
    data["providers"]["anthropic"]["apiKey"] = WRONG_KEY
    anthropic_fake.default = Behaviour("ok", echo_key=True)
    config = write_config(tmp_path, data)
    result = run_cli("--config", str(config), "--task", "Hi", "--json", env=KEYS)
    assert result.returncode == 0, result.stderr
    attempts = json.loads(result.stdout)["attempts"]
    assert "invalid x-api-key ***" in attempts[0]["error"]
    assert WRONG_KEY not in result.stdout + result.stderr


def test_redact_masks_registered_keys_and_key_shapes():
    register_secret("plain-secret-value-1234")
    assert redact("got plain-secret-value-1234 back") == "got *** back"
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert redact("key sk-proj-abcdefghij1234") == "key ***"
    assert redact("short") == "short"


def test_help_imports_no_http_client_or_router():
    code = ("import sys\nfrom agentic_onnx.cli.main import main\nsys.argv = ['agentic-onnx', "
            "'--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "loaded = [m for m in ('httpx2', 'httpx', 'sqlite3', 'agentic_onnx.router.config', "
            "'agentic_onnx.router.execute') if m in sys.modules]\n"
            "print('LOADED', loaded, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert "LOADED []" in result.stderr, result.stderr
    assert "--privacy" in result.stdout and "--local-only" in result.stdout
