"""Secrets are remembered here when a config is loaded and scrubbed from every message we emit.

A server may echo a key back only in part ("invalid key sk-abc123456..."), so `redact` masks
every run of 8 or more consecutive characters of a registered secret, not only the whole value.
It does so with a set of the secrets' 8-character windows: secrets are few and short, so the
set is small, and one pass over the text finds every covered character.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# Shortest run of a secret that is masked: shorter runs would mask ordinary words.
MIN_SECRET_RUN = 8
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-.]{8,})")
_SECRETS: set[str] = set()
_WINDOWS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember `value` so that `redact` removes it, and any 8-character run of it, from text."""
    if not value or len(value) < MIN_SECRET_RUN or value in _SECRETS:
        return
    _SECRETS.add(value)
    _WINDOWS.update(value[start:start + MIN_SECRET_RUN]
                    for start in range(len(value) - MIN_SECRET_RUN + 1))


def redact(text: str) -> str:
    """`text` with every run of >= 8 characters of a registered secret, and anything shaped
    like a key (`sk-...`, `Bearer ...`), replaced by `***`."""
    if _WINDOWS and len(text) >= MIN_SECRET_RUN:
        text = _mask_runs(text)
    return _KEY_SHAPES.sub(MASK, text)


def _mask_runs(text: str) -> str:
    """Mask each maximal stretch of text covered by registered 8-character windows."""
    pieces: list[str] = []
    kept_from = 0  # start of the text not yet copied to pieces
    covered_to = -1  # end (exclusive) of the stretch being masked, -1 when none
    for start in range(len(text) - MIN_SECRET_RUN + 1):
        if text[start:start + MIN_SECRET_RUN] not in _WINDOWS:
            continue
        if start > covered_to:  # a new stretch begins
            if covered_to >= 0:
                pieces.append(MASK)
            pieces.append(text[kept_from:start])
        covered_to = start + MIN_SECRET_RUN
        kept_from = covered_to
    if covered_to < 0:
        return text
    pieces.append(MASK)
    pieces.append(text[kept_from:])
    return "".join(pieces)


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its userinfo (user, password) and its query values."""
    try:
        parts = urlsplit(url)
        found = [parts.username or "", parts.password or ""]
    except ValueError:
        return []
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    return [value for value in found if value]


def mask_url(url: str) -> str:
    """`url` with its userinfo and every query value shown as `***` (names stay readable)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return MASK  # not a URL we can take apart: show none of it
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{MASK}@{host}{port}" if "@" in parts.netloc else parts.netloc
    query = "&".join(f"{name}={MASK}" if value else name
                     for name, value in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
