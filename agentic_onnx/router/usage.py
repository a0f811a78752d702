"""The usage log: one SQLite row per request, under the agentic-flow home (`usage.db`).

Rows hold time, command, provider, model, rule, token counts, cost, latency, TTFT and outcome.
Never the prompt text, unless the request was made with `--log-prompts`. The schema moves
forward by numbered migrations (PRAGMA user_version); a database from a newer version is left
alone. Logging never fails a request: errors here become a notice. A usage.db that cannot be
used (corrupt, truncated, a folder in its place, a read-only home) is a one-line LocalFileError
naming the file and what to do (move it aside); `performance-optimized` routing then treats the
history as empty, with a warning.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agentic_onnx.core.errors import LocalFileError
from agentic_onnx.core.paths import home_dir

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            command TEXT NOT NULL,
            provider TEXT,
            model TEXT,
            rule TEXT,
            private INTEGER NOT NULL DEFAULT 0,
            local INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            latency_ms REAL,
            ttft_ms REAL,
            outcome TEXT NOT NULL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 1
        );
    """),
    (2, """
        ALTER TABLE requests ADD COLUMN prompt TEXT;
        CREATE INDEX requests_ts ON requests (ts);
        CREATE INDEX requests_provider_model ON requests (provider, model);
    """),
    (3, """
        ALTER TABLE requests ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def usage_db_path() -> Path:
    return home_dir() / "usage.db"


@dataclass
class UsageRecord:
    command: str
    provider: str | None
    model: str | None
    rule: str | None
    private: bool
    local: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float | None
    ttft_ms: float | None
    outcome: str
    error: str | None = None
    attempts: int = 1
    prompt: str | None = None
    cached: bool = False  # answered from the response cache (router/response_cache.py)


@contextmanager
def connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    """An open, migrated database (created on first use), in autocommit mode. Any database or
    file error inside the `with` becomes a UsageLogError."""
    path = path or usage_db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path, timeout=5.0, isolation_level=None)) as connection:
            migrate(connection)
            yield connection
    except (sqlite3.DatabaseError, OSError) as error:
        if isinstance(error, sqlite3.ProgrammingError):
            raise  # our SQL is wrong: a bug, not the user's file
        raise UsageLogError.about(path, error) from error


class UsageLogError(LocalFileError):
    """usage.db cannot be opened, read or written."""

    @classmethod
    def about(cls, path: Path, error: Exception) -> UsageLogError:
        reason = (getattr(error, "strerror", None) or str(error) or type(error).__name__)
        reason = reason.strip().splitlines()[0] if reason.strip() else type(error).__name__
        if "locked" in reason:
            hint = "Another agentic-onnx process is writing it; try again."
        elif path.is_dir():
            hint = (f"A folder is in its place: move it aside (`mv {path} {path}.old`); a new log "
                    "starts with the next request.")
        else:
            hint = (f"If it is damaged, move it aside (`mv {path} {path}.bad`): a new log starts "
                    f"with the next request. Otherwise check that {path.parent} is writable.")
        return cls(f"Could not use the usage log {path}: {reason}.", hint)


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the migrations newer than the database's user_version, each in its own
    transaction (BEGIN IMMEDIATE, so two processes never apply the same one); return the
    version."""
    version = _user_version(connection)
    for number, script in MIGRATIONS:
        if number <= version:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            if _user_version(connection) < number:
                for statement in filter(str.strip, script.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        version = _user_version(connection)
    return version


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def log_request(record: UsageRecord, path: Path | None = None) -> None:
    row = asdict(record)
    row["ts"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    row["private"], row["local"] = int(record.private), int(record.local)
    row["cached"] = int(record.cached)
    columns = ", ".join(row)
    marks = ", ".join(f":{name}" for name in row)
    with connect(path) as connection:
        connection.execute(f"INSERT INTO requests ({columns}) VALUES ({marks})", row)


def rows(since: datetime | None = None, path: Path | None = None) -> list[sqlite3.Row]:
    """The logged requests (since `since`); none, without creating the file, before the first."""
    if not (path or usage_db_path()).exists():
        return []
    with connect(path) as connection:
        connection.row_factory = sqlite3.Row
        if since is None:
            return connection.execute("SELECT * FROM requests ORDER BY id").fetchall()
        return connection.execute("SELECT * FROM requests WHERE ts >= ? ORDER BY id",
                                  (since.isoformat(timespec="milliseconds"),)).fetchall()


def cloud_spend_usd(since: datetime, path: Path | None = None) -> float:
    """What cloud requests (rows not local) since `since` cost, as logged: the spend that
    routing.costOptimization's budgets count (router/spend_limits.py). Unknown costs count 0."""
    return sum(row["cost_usd"] or 0.0 for row in rows(since, path) if not row["local"])


def median_latency_by_provider(days: int = 7, path: Path | None = None,
                               warn: Callable[[str], None] | None = None) -> dict[str, float]:
    """Median latency (ms) of each provider's successful requests in the last `days` days. A log
    that cannot be read counts as no history: `warn` is told why, in one line."""
    since = datetime.now(timezone.utc) - timedelta(days=days)
    try:
        logged = rows(since, path)
    except UsageLogError as error:
        if warn is not None:
            warn(f"{error.message} Routing as if there were no latency history. {error.hint}")
        return {}
    latencies: dict[str, list[float]] = {}
    for row in logged:
        if row["outcome"] == "ok" and row["latency_ms"] is not None:
            latencies.setdefault(row["provider"], []).append(row["latency_ms"])
    return {name: statistics.median(values) for name, values in latencies.items()}


@dataclass
class UsageLine:
    provider: str
    model: str
    requests: int = 0
    ok: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: int = 0
    saved_usd: float = 0.0
    latency_ms: list[float] | None = None

    def to_json(self) -> dict[str, object]:
        latencies = self.latency_ms or []
        return {"provider": self.provider, "model": self.model, "requests": self.requests,
                "ok": self.ok, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6), "cost_unknown_requests": self.cost_unknown,
                "saved_usd": round(self.saved_usd, 6),
                "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None}


def summarize(rows_: list[sqlite3.Row], reference_price: object | None) -> list[UsageLine]:
    """Per provider and model: counts, tokens, cost; for local rows, the money saved at the
    reference cloud price (a `costs.ModelPrice`)."""
    lines: dict[tuple[str, str], UsageLine] = {}
    for row in rows_:
        key = (row["provider"] or "-", row["model"] or "-")
        line = lines.setdefault(key, UsageLine(*key, latency_ms=[]))
        line.requests += 1
        if row["outcome"] not in ("ok", "invalid"):  # invalid: answered (and paid), not as asked
            continue
        line.ok += row["outcome"] == "ok"
        line.prompt_tokens += row["prompt_tokens"]
        line.completion_tokens += row["completion_tokens"]
        if row["cost_usd"] is None:
            line.cost_unknown += 1
        else:
            line.cost_usd += row["cost_usd"]
        if row["local"] and reference_price is not None:
            line.saved_usd += reference_price.cost(row["prompt_tokens"],  # type: ignore[attr-defined]
                                                   row["completion_tokens"])
        if row["latency_ms"] is not None:
            line.latency_ms.append(row["latency_ms"])  # type: ignore[union-attr]
    return sorted(lines.values(), key=lambda line: (line.provider, line.model))


# The cloud price `agentic-onnx usage` compares local runs with (the CLI's --compare-to default).
DEFAULT_REFERENCE = "anthropic:claude-sonnet-4-5"
_TOTALLED = ("requests", "ok", "prompt_tokens", "completion_tokens", "cost_unknown_requests")


def usage_summary(days: int | None = None, compare_to: str = DEFAULT_REFERENCE,
                  path: Path | None = None) -> dict[str, object]:
    """What `agentic-onnx usage` reports: a line per provider and model over the last `days`
    days (None: all time), and the totals; local runs are priced at `compare_to`
    (PROVIDER:MODEL from the price table) to show what they saved. An unknown price is a
    UsageError."""
    from agentic_onnx.core.errors import UsageError
    from agentic_onnx.router.costs import lookup_price

    kind, _, model = compare_to.partition(":")
    reference = lookup_price(kind, model) if model else None
    if reference is None:
        raise UsageError(f"No price known for {compare_to!r}.",
                         f"Use PROVIDER:MODEL from the price table, e.g. {DEFAULT_REFERENCE}.")
    since = datetime.now(timezone.utc) - timedelta(days=days) if days else None
    lines = [line.to_json() for line in summarize(rows(since, path), reference)]
    totals: dict[str, object] = {key: sum(line[key] for line in lines) for key in _TOTALLED}  # type: ignore[misc]
    totals["cost_usd"] = round(sum(line["cost_usd"] for line in lines), 6)  # type: ignore[misc]
    totals["saved_usd"] = round(sum(line["saved_usd"] for line in lines), 6)  # type: ignore[misc]
    return {"period": f"last {days} days" if days else "all time", "reference": compare_to,
            "lines": lines, "totals": totals}
