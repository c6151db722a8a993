"""The history database's schema: numbered migrations, one SQL block per version, in order.

Same rules as the job store's (``jobs/schema.py``): append a version, never edit one that
shipped; blocks are plain statements split on ``;`` with ``--`` comments. Every query against
these tables lives in :mod:`flextier.history.db`. See docs/history.md for what is kept and why.
"""
from __future__ import annotations

#: Upper edges (seconds) of the latency histogram's buckets; a last bucket holds everything above.
LATENCY_EDGES: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900)
N_BUCKETS = len(LATENCY_EDGES) + 1
_BUCKET_COLS = ",\n    ".join(f"l{i} REAL NOT NULL DEFAULT 0" for i in range(N_BUCKETS))

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", f"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL            -- 'domain' = 'real' or 'emulated' (never both in one file)
);
CREATE TABLE cells (
    provider TEXT NOT NULL,
    model TEXT NOT NULL,           -- canonical catalog name
    tier TEXT NOT NULL,            -- served tier (requested tier for an attempt that was not served)
    week INTEGER NOT NULL,         -- weeks since Monday 1970-01-05 00:00 UTC
    how INTEGER NOT NULL CHECK (how BETWEEN 0 AND 167),   -- hour of week, UTC, 0 = Monday 00:00
    attempts REAL NOT NULL DEFAULT 0,
    ok REAL NOT NULL DEFAULT 0,
    sheds REAL NOT NULL DEFAULT 0,
    timeouts REAL NOT NULL DEFAULT 0,
    errors REAL NOT NULL DEFAULT 0,
    active_s REAL NOT NULL DEFAULT 0,    -- seconds with attempts on this key (gaps <= 180 s)
    out_tokens REAL NOT NULL DEFAULT 0,  -- output tokens of the served attempts
    {_BUCKET_COLS},                      -- latency histogram of served attempts, edges LATENCY_EDGES
    PRIMARY KEY (provider, model, tier, week, how)
);
"""),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
if [m[0] for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover - a coding slip
    raise RuntimeError("history/schema.py: migration ids must run 1..N in list order")

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "LATENCY_EDGES", "N_BUCKETS"]
