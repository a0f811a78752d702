"""agentic-flow's response `cache` (`enabled`, `ttl` seconds, `maxSize` entries, `strategy: lru`):
an identical deterministic request answered again from disk.

Deterministic: greedy (temperature 0) or a fixed seed. Identical: the same provider and model
(the route's first choice), messages, tools, tool choice, response format, images, adapter and
every generation option. The cache is a SQLite file under the home (`response-cache.db`), so
it never leaves the machine and private requests may use it too. A hit is answered without
sending anything: the answer's events replayed, cost 0, marked `cached` in `--json`, the usage
log and `serve`'s `x-agentic-cache` header. Least recently used entries go past `maxSize`;
an entry older than `ttl` is a miss (and is removed). Only answers that passed their check are
stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_onnx.core.generation.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from agentic_onnx.core.generation.request import ChatRequest
from agentic_onnx.core.paths import home_dir

FILE_NAME = "response-cache.db"
DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_ENTRIES = 1000


@dataclass(frozen=True)
class CacheSettings:
    ttl_s: float = DEFAULT_TTL_S
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None) -> CacheSettings | None:
        """The config's `cache` section, or None when the cache is off (absent, or not
        `enabled`). Bad values fall back to the defaults."""
        if not isinstance(raw, dict) or raw.get("enabled") is not True:
            return None
        ttl, size = raw.get("ttl", DEFAULT_TTL_S), raw.get("maxSize", DEFAULT_MAX_ENTRIES)
        ttl = float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) \
            and ttl >= 0 else DEFAULT_TTL_S
        size = int(size) if isinstance(size, int) and not isinstance(size, bool) \
            and size > 0 else DEFAULT_MAX_ENTRIES
        return cls(ttl, size)


def cache_key(request: ChatRequest, provider: str, model: str | None) -> str | None:
    """The key of a deterministic request (None: sampling without a seed is never cached)."""
    options = request.options
    if not options.greedy and options.seed is None:
        return None
    identity = {
        "provider": provider, "model": model, "messages": list(request.messages),
        "tools": request.openai_tools(),
        "tool_choice": None if request.tool_choice is None else
        [request.tool_choice.mode, request.tool_choice.name],
        "response_format": None if request.response_format is None else
        request.response_format.cloud_schema(),
        "images": [hashlib.sha256(image.data).hexdigest() for image in request.images],
        "adapter": request.adapter, "options": options.model_dump(mode="json"),
    }
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    def __init__(self, settings: CacheSettings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = path or home_dir() / FILE_NAME

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer for `key` (and its use noted), or None."""
        now = time.time()
        with closing(self._connect()) as db, db:
            row = db.execute("SELECT stored, answer FROM answers WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if now - row[0] > self.settings.ttl_s:
                db.execute("DELETE FROM answers WHERE key = ?", (key,))
                return None
            db.execute("UPDATE answers SET used = ? WHERE key = ?", (now, key))
        return json.loads(row[1])

    def put(self, key: str, response: Any) -> None:
        """Store a finished Response's answer; the least recently used go past `maxSize`."""
        answer = {"text": response.text, "tool_calls": response.tool_calls,
                  "usage": [response.usage.prompt_tokens, response.usage.completion_tokens]
                  if response.usage else [0, 0],
                  "finish_reason": response.finish_reason, "stop_sequence": response.stop_sequence,
                  "provider": response.provider, "model": response.model,
                  "execution_provider": response.execution_provider}
        now = time.time()
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO answers (key, stored, used, answer) "
                       "VALUES (?, ?, ?, ?)", (key, now, now, json.dumps(answer)))
            db.execute("DELETE FROM answers WHERE key NOT IN (SELECT key FROM answers "
                       "ORDER BY used DESC LIMIT ?)", (self.settings.max_entries,))

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, stored REAL, "
                   "used REAL, answer TEXT)")
        return db


def replay(answer: dict[str, Any]) -> Iterator[StreamEvent]:
    """A stored answer as the stream its provider sent."""
    if answer["text"]:
        yield TextDelta(answer["text"])
    for call in answer["tool_calls"]:
        yield ToolCallDelta(call["id"], call["name"], call["arguments"])
    yield Usage(*answer["usage"])
    yield Finish(answer["finish_reason"] or "stop", stop_sequence=answer["stop_sequence"])
