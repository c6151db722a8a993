"""The gateway's ledger: one SQLite row per call, and every SQL statement the gateway runs.

Why its own file and this shape: the job store's style (docs in ``jobs/schema.py``): numbered
migrations applied in order, one transaction each, so a ledger written by an older gateway is
upgraded in place; every query lives in this module. Money is stored as exact decimal text
(``NULL`` = unknown price, never $0) and summed in Python with :class:`~decimal.Decimal`.

Writes never block a request: :meth:`Ledger.add` appends the row to a list, and a writer
thread commits whatever has gathered every ``batch_s`` in one transaction (so 128 calls in
flight cost one commit, not 128). The writer is woken only when it went idle (no rows for a
whole batch), not per row or per batch: waking a thread is a notify plus a GIL hand-over, and a
``queue.Queue`` notify per call was 6% of the gateway's CPU under bench load (docs/gateway.md).
:meth:`Ledger.flush` waits until every row added so far is committed (tests, shutdown, reports).

What is never stored: API keys (gateway or upstream), prompts, answers. ``key`` is the
gateway key's configured *name*.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
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
    # the id a caller gets in ``x-flextier-call-id``, for ``GET /api/calls/{id}`` (a stream's cost)
    (2, "call_id", """
ALTER TABLE calls ADD COLUMN call_id TEXT;
CREATE INDEX calls_call_id ON calls (call_id)
"""),
]

_COLS = ("ts", "key", "provider", "model", "route", "stream", "requested_tier", "served_tier", "attempts", "sheds",
         "fallback", "input_tokens", "cached_input_tokens", "output_tokens", "cost", "standard_cost", "latency_s",
         "queue_s", "status", "outcome", "call_id")
_INSERT = f"INSERT INTO calls ({', '.join(_COLS)}) VALUES ({', '.join('?' for _ in _COLS)})"
_SELECT_SINCE = f"SELECT {', '.join(_COLS)} FROM calls WHERE ts >= ? ORDER BY ts"
_COST_SINCE = "SELECT cost, standard_cost FROM calls WHERE key = ? AND ts >= ? AND cost IS NOT NULL"
_COUNT = "SELECT COUNT(*) FROM calls"
_BY_CALL_ID = f"SELECT {', '.join(_COLS)} FROM calls WHERE call_id = ?"


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
    call_id: str | None = None          # ``x-flextier-call-id``; NULL on rows from before migration 2

    def values(self) -> tuple[Any, ...]:
        """The row in ``_COLS`` order, money as exact text (no ``asdict``: it deep-copies every field)."""
        d = dict(self.__dict__)
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

    def __init__(self, path: str | Path, *, create: bool = True, batch_s: float = 0.05) -> None:
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise FileNotFoundError(self.path)
        if create:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        migrate(self._conn)
        self.batch_s = batch_s
        self._pending: list[CallRow] = []
        self._plock = threading.Lock()          # uncontended: held for an append or a swap
        self._wake = threading.Event()          # set by add() only when the writer went idle
        self._idle = False
        self._hurry = threading.Event()         # flush/close: write now, do not gather
        self._done = threading.Condition()
        self._added = 0                         # rows handed to add(), and rows committed
        self._written = 0
        self._closing = False
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
        with self._plock:
            self._pending.append(row)
            self._added += 1
            if self._idle:
                self._idle = False
                self._wake.set()

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                self._hurry.wait(self.batch_s)      # let the calls finishing now join this batch
                with self._plock:
                    rows, self._pending = self._pending, []
                    self._hurry.clear()
                    if not rows and not self._closing:
                        self._idle = True           # nothing came for a whole batch: sleep until add()
                        self._wake.clear()
                if not rows and not self._closing:
                    self._wake.wait()
                    continue
                if rows:
                    conn.execute("BEGIN")
                    conn.executemany(_INSERT, [r.values() for r in rows])
                    conn.execute("COMMIT")
                with self._done:
                    self._written += len(rows)
                    self._done.notify_all()
                if self._closing:
                    with self._plock:
                        if not self._pending:
                            return
                    self._hurry.set()
        finally:
            conn.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every row added so far is committed."""
        if self._writer is None:
            return
        with self._plock:
            target = self._added
            self._idle = False
        self._hurry.set()
        self._wake.set()
        with self._done:
            self._done.wait_for(lambda: self._written >= target or not self._writer_alive(), timeout)

    def _writer_alive(self) -> bool:
        w = self._writer
        return w is not None and w.is_alive()

    def close(self) -> None:
        if self._writer is not None:
            self._closing = True
            self._hurry.set()
            self._wake.set()
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

    def call(self, call_id: str) -> CallRow | None:
        """The committed row of one call by its ``x-flextier-call-id`` (None when unknown)."""
        with self._lock:
            v = self._conn.execute(_BY_CALL_ID, (call_id,)).fetchone()
        return None if v is None else CallRow.from_values(v)

    def spent(self, key: str, since: float) -> Decimal:
        """Money a key has spent since ``since`` (priced calls; exact)."""
        with self._lock:
            return sum((Decimal(c) for c, _s in self._conn.execute(_COST_SINCE, (key, since))), Decimal(0))
