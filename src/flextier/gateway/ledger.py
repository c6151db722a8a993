"""The gateway's ledger: one SQLite row per call, and every SQL statement the gateway runs.

Why its own file and this shape: the job store's style (docs in ``jobs/schema.py``): numbered
migrations applied in order, one transaction each, so a ledger written by an older gateway is
upgraded in place; every query lives in this module. Money is stored as exact decimal text
(``NULL`` = unknown price, never $0) and summed in Python with :class:`~decimal.Decimal`.

Writes never block a request: :meth:`Ledger.add` puts the row on a queue and a writer thread
commits whatever has queued up in one transaction (so 128 calls in flight cost one commit,
not 128). :meth:`Ledger.flush` waits for the queue to drain (tests, shutdown, reports).

What is never stored: API keys (gateway or upstream), prompts, answers. ``key`` is the
gateway key's configured *name*.
"""
from __future__ import annotations

import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

__all__ = ["Ledger", "CallRow", "MIGRATIONS"]

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", """
CREATE TABLE calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,                  -- wall clock (epoch seconds) when the call ended
    key TEXT NOT NULL,                 -- the gateway key's name, '-' single-user, never a secret
    provider TEXT NOT NULL,
    model TEXT NOT NULL,               -- catalog name when known, else the wire id
    route TEXT NOT NULL,               -- chat | responses | generate | messages | passthrough
    stream INTEGER NOT NULL DEFAULT 0,
    requested_tier TEXT NOT NULL,
    served_tier TEXT,                  -- NULL when nothing was served
    attempts INTEGER NOT NULL DEFAULT 0,
    sheds INTEGER NOT NULL DEFAULT 0,
    fallback INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER,
    cached_input_tokens INTEGER,
    output_tokens INTEGER,
    cost TEXT,                         -- exact decimal USD, NULL = unknown
    standard_cost TEXT,
    latency_s REAL NOT NULL,
    queue_s REAL NOT NULL DEFAULT 0,   -- time before the attempt that served (sheds, backoff)
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL              -- ok | an error class | budget | unauthorized | refused
);
CREATE INDEX calls_ts ON calls (ts);
CREATE INDEX calls_key_ts ON calls (key, ts)
"""),
]

_COLS = ("ts", "key", "provider", "model", "route", "stream", "requested_tier", "served_tier", "attempts", "sheds",
         "fallback", "input_tokens", "cached_input_tokens", "output_tokens", "cost", "standard_cost", "latency_s",
         "queue_s", "status", "outcome")
_INSERT = f"INSERT INTO calls ({', '.join(_COLS)}) VALUES ({', '.join('?' for _ in _COLS)})"
_SELECT_SINCE = f"SELECT {', '.join(_COLS)} FROM calls WHERE ts >= ? ORDER BY ts"
_COST_SINCE = "SELECT cost, standard_cost FROM calls WHERE key = ? AND ts >= ? AND cost IS NOT NULL"
_COUNT = "SELECT COUNT(*) FROM calls"


@dataclass
class CallRow:
    """One call as the ledger keeps it (see the table's comments)."""

    ts: float
    key: str
    provider: str
    model: str
    route: str
    stream: bool
    requested_tier: str
    served_tier: str | None
    attempts: int
    sheds: int
    fallback: bool
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None
    standard_cost: Decimal | None
    latency_s: float
    queue_s: float
    status: int
    outcome: str

    def values(self) -> tuple[Any, ...]:
        d = asdict(self)
        for m in ("cost", "standard_cost"):
            d[m] = None if d[m] is None else str(d[m])
        d["stream"] = int(bool(d["stream"]))
        d["fallback"] = int(bool(d["fallback"]))
        return tuple(d[c] for c in _COLS)

    @classmethod
    def from_values(cls, v: Iterable[Any]) -> "CallRow":
        d = dict(zip(_COLS, v))
        for m in ("cost", "standard_cost"):
            d[m] = None if d[m] is None else Decimal(d[m])
        d["stream"] = bool(d["stream"])
        d["fallback"] = bool(d["fallback"])
        return cls(**d)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration the ledger has not recorded, one transaction each."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
                 "applied_at REAL)")
    have = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, sql in MIGRATIONS:
        if version in have:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in sql.split(";"):
                body = "\n".join(ln.split("--", 1)[0] for ln in stmt.splitlines()).strip()
                if body:
                    conn.execute(body)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class Ledger:
    """The SQLite ledger with a background writer (see the module docstring)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise FileNotFoundError(self.path)
        if create:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        migrate(self._conn)
        self._q: queue.Queue[CallRow | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- writing -------------------------------------------------------------------------------
    def add(self, row: CallRow) -> None:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="flextier-gateway-ledger",
                                                    daemon=True)
                    self._writer.start()
        self._q.put(row)

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        while True:
            row = self._q.get()
            batch = [row]
            while True:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            rows = [r for r in batch if r is not None]
            if rows:
                conn.execute("BEGIN")
                conn.executemany(_INSERT, [r.values() for r in rows])
                conn.execute("COMMIT")
            for _ in batch:
                self._q.task_done()
            if any(r is None for r in batch):
                conn.close()
                return

    def flush(self) -> None:
        """Wait until every row added so far is committed."""
        if self._writer is not None:
            self._q.join()

    def close(self) -> None:
        if self._writer is not None:
            self._q.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def rows(self, since: float = 0.0) -> list[CallRow]:
        with self._lock:
            return [CallRow.from_values(v) for v in self._conn.execute(_SELECT_SINCE, (since,))]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute(_COUNT).fetchone()[0])

    def spent(self, key: str, since: float) -> Decimal:
        """Money a key has spent since ``since`` (priced calls; exact)."""
        with self._lock:
            return sum((Decimal(c) for c, _s in self._conn.execute(_COST_SINCE, (key, since))), Decimal(0))
