"""Redaction: whole keys, any run of 8+ characters of one (a server's partial echo), URLs."""

from __future__ import annotations

import pytest

from agentic_onnx.router.secrets import mask_url, redact, register_secret, url_secrets

KEY = "corp-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def registered() -> None:
    register_secret(KEY)


def test_the_whole_key_is_masked():
    assert redact(f"got {KEY} back") == "got *** back"


@pytest.mark.parametrize("echo", [
    KEY[:8],  # the shortest run that counts
    KEY[:15] + "...",  # truncated, as error bodies do
    KEY[5:21],  # a slice from the middle
    KEY[-9:],  # the tail
])
def test_any_run_of_eight_or_more_characters_is_masked(echo):
    masked = redact(f"invalid key {echo} (authentication_error)")
    assert masked.startswith("invalid key ***") and masked.endswith("(authentication_error)")
    assert not any(KEY[start:start + 8] in masked for start in range(len(KEY) - 7))


def test_runs_shorter_than_eight_characters_stay():
    assert redact(f"token {KEY[:7]}") == f"token {KEY[:7]}"


def test_two_echoes_in_one_text_are_masked_separately():
    assert redact(f"a {KEY[:10]} b {KEY[12:24]} c") == "a *** b *** c"


def test_short_values_are_never_registered():
    register_secret("short")
    assert redact("a short word") == "a short word"


def test_key_shapes_are_masked_without_registration():
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert redact("key sk-proj-abcdefghij1234") == "key ***"


def test_redaction_is_linear_on_long_text():
    text = ("x" * 10_000 + KEY[3:20]) * 20  # 200 KB: one pass, no per-secret substring search
    assert redact(text).count("***") == 20


def test_url_credentials_are_found_and_masked():
    url = "https://alice:pa55word-xyz@proxy.example:8443/v1?api_key=qwertyuiop123&region=eu"
    assert set(url_secrets(url)) == {"alice", "pa55word-xyz", "qwertyuiop123", "eu"}
    assert mask_url(url) == "https://***@proxy.example:8443/v1?api_key=***&region=***"
    assert mask_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert mask_url("http://[::1]:8000/v1?k=v") == "http://[::1]:8000/v1?k=***"
