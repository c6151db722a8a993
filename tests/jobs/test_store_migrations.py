"""Stores written by older flextier versions open, upgrade in place and keep their data.

The fixtures below are the schema SQL exactly as versions 1 and 2 shipped it (migration 1 as of the
first release, migration 2 as of the send records), frozen here on purpose: :data:`MIGRATIONS` may
only ever grow, and a migration edited in place instead of appended would leave an upgraded store
with a different schema from a fresh one, which ``test_an_upgraded_store_has_the_fresh_schema``
catches.
"""
from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from flextier.jobs.store import MIGRATIONS, SCHEMA_VERSION, JobStore

SCHEMA_MIGRATIONS = ("CREATE TABLE schema_migrations "
                     "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);")

V1_SQL = """
CREATE TABLE job (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    model TEXT NOT NULL,
    tier_mode TEXT NOT NULL,
    deadline REAL,                 -- absolute, in the job's clock domain (epoch seconds)
    deadline_spec TEXT,
    clock_domain TEXT NOT NULL DEFAULT 'wall',   -- 'wall' or 'emulated'
    input_path TEXT,
    input_hash TEXT,
    input_format TEXT,
    prompt_template TEXT,
    output_path TEXT,
    ordered INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL DEFAULT '{}',           -- JSON; never holds API keys
    state TEXT NOT NULL DEFAULT 'importing',     -- importing|ready|running|paused|stopped|done
    total INTEGER NOT NULL DEFAULT 0,
    skipped_invalid INTEGER NOT NULL DEFAULT 0,
    t0 REAL,                       -- clock time the planner's uniform line starts from
    started_at REAL,
    finished_at REAL,
    last_clock REAL,
    out_offset INTEGER NOT NULL DEFAULT 0,
    out_gen INTEGER NOT NULL DEFAULT 0,
    out_next_seq INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    remote_id TEXT,
    state TEXT NOT NULL,           -- preparing|submitted|in_progress|completed|expired|cancelled|failed
    endpoint TEXT,
    created_at REAL NOT NULL,
    submitted_at REAL,
    completed_at REAL,
    expires_at REAL,
    item_count INTEGER NOT NULL DEFAULT 0,
    input_ref TEXT,
    output_ref TEXT,
    error_ref TEXT,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE items (
    seq INTEGER PRIMARY KEY,       -- input order
    custom_id TEXT NOT NULL UNIQUE,
    line INTEGER NOT NULL,
    request TEXT NOT NULL,         -- the input line object (batch-file or simple shape)
    state TEXT NOT NULL DEFAULT 'pending',
    tier TEXT,                     -- tier of the latest attempt
    attempts INTEGER NOT NULL DEFAULT 0,
    in_batch TEXT REFERENCES batches(id),
    result TEXT,                   -- the output line (OpenAI batch output shape + flextier)
    served_tier TEXT,
    cost TEXT,                     -- Decimal as text; NULL = unknown
    standard_cost TEXT,
    possibly_billed INTEGER NOT NULL DEFAULT 0,  -- sends whose outcome a crash/timeout hid
    error_class TEXT,
    latency REAL,
    finished_at REAL,
    out_gen INTEGER
);
CREATE INDEX items_pending ON items(seq) WHERE state = 'pending';
CREATE INDEX items_batch ON items(in_batch) WHERE in_batch IS NOT NULL;
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    tier TEXT NOT NULL,
    outcome TEXT NOT NULL,         -- 'ok' or the error class name
    latency REAL,
    status INTEGER,
    error_code TEXT,
    possibly_billed INTEGER NOT NULL DEFAULT 0,
    ts REAL NOT NULL
);
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    seq INTEGER NOT NULL,
    tier TEXT NOT NULL,            -- tier the provider reported serving
    cost TEXT,
    standard_cost TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'billed'
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,            -- run_start|resume|recovered|pause|budget|safety_net|stop|done
    detail TEXT
);
"""

V2_SQL = """
CREATE TABLE sends (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    tier TEXT NOT NULL,
    reserved TEXT,                 -- upper-bound cost (Decimal as text) held for it; NULL = no cap, no bound
    state TEXT NOT NULL DEFAULT 'open',   -- open (in flight) | unknown (outcome never learnt)
    ts REAL NOT NULL
);
CREATE INDEX sends_seq ON sends(seq);
INSERT INTO sends (seq, tier, reserved, state, ts)
    SELECT seq, COALESCE(tier, 'flex'), NULL, 'open', 0 FROM items WHERE state = 'inflight' AND in_batch IS NULL;
"""

_DONE_LINE = '{"id":"flextier_req_0","custom_id":"a","response":{"status_code":200},"error":null}'


def _old_store(path: Path, version: int) -> Path:
    """A store as flextier schema ``version`` (1 to 4) left it: mid-job, one item in flight, one in a batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.executescript(SCHEMA_MIGRATIONS + V1_SQL)
    db.execute("INSERT INTO schema_migrations VALUES (1, 'initial', '2026-11-27T09:32:29Z')")
    if version >= 2:  # a store created by version 2 ran both migrations on an empty file
        db.executescript(V2_SQL)
        db.execute("INSERT INTO schema_migrations VALUES (2, 'sends', '2026-12-02T00:56:56Z')")
    if version >= 3:  # version 3 (before issue 19's compact lines and settled sends): TEXT rows
        db.execute("ALTER TABLE job ADD COLUMN out_file TEXT")
        db.execute("INSERT INTO schema_migrations VALUES (3, 'output file identity', '2026-12-02T04:00:00Z')")
    if version >= 4:  # version 4 (run --not-before): the start instant and its reason
        db.execute("ALTER TABLE job ADD COLUMN not_before REAL")
        db.execute("ALTER TABLE job ADD COLUMN not_before_why TEXT")
        db.execute("INSERT INTO schema_migrations VALUES (4, 'not before', '2026-12-02T07:30:00Z')")
    db.execute("INSERT INTO job (id, name, created_at, model, tier_mode, deadline, deadline_spec, input_path, "
               "input_hash, config, state, total, out_offset, out_gen, runs) VALUES (1, 'old', 100.0, "
               "'openai/gpt-5.4-mini', 'auto', 4000.0, '1h', '/data/jobs.jsonl', 'abc123', "
               "'{\"concurrency\": 8}', 'running', 5, 90, 1, 1)")
    db.execute("INSERT INTO batches (id, provider, remote_id, state, created_at, submitted_at, item_count, meta) "
               "VALUES ('b1', 'openai', 'batch_9', 'submitted', 110.0, 111.0, 1, '{\"remote_id\": \"batch_9\"}')")
    rows = [(0, "a", 1, '{"custom_id":"a"}', "done", "flex", 1, None, _DONE_LINE, "flex", "0.0005", "0.001", 0,
             None, 1.5, 120.0, 1),
            (1, "b", 2, '{"custom_id":"b"}', "failed", "standard", 5, None, '{"custom_id":"b","error":{}}', None,
             None, None, 1, "BadRequest", None, 130.0, 1),
            (2, "c", 3, '{"custom_id":"c"}', "inflight", "standard", 1, None, None, None, None, None, 0, None, None,
             None, None),
            (3, "d", 4, '{"custom_id":"d"}', "inflight", "batch", 0, "b1", None, None, None, None, 0, None, None,
             None, None),
            (4, "e", 5, '{"custom_id":"e"}', "pending", None, 0, None, None, None, None, None, 0, None, None, None,
             None)]
    db.executemany("INSERT INTO items (seq, custom_id, line, request, state, tier, attempts, in_batch, result, "
                   "served_tier, cost, standard_cost, possibly_billed, error_class, latency, finished_at, out_gen) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO attempts (seq, tier, outcome, latency, status, error_code, possibly_billed, ts) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [(0, "flex", "FlexCapacityUnavailable", None, 429, None, 0, 115.0),
                    (0, "flex", "ok", 1.5, 200, None, 0, 120.0),
                    (1, "standard", "BadRequest", None, 400, "invalid", 0, 130.0)])
    db.execute("INSERT INTO ledger (ts, seq, tier, cost, standard_cost, input_tokens, output_tokens) "
               "VALUES (120.0, 0, 'flex', '0.0005', '0.001', 100, 50)")
    db.execute("INSERT INTO events (ts, kind, detail) VALUES (100.0, 'run_start', '{\"runs\": 1}')")
    if version >= 2:
        # a version-2 run under --max-cost: its send on "c" timed out (unknown, reserved) and the
        # resend of "c" was in flight at the kill (open)
        db.execute("INSERT INTO sends (seq, tier, reserved, state, ts) VALUES (2, 'standard', '0.002', 'unknown', 140)")
        db.execute("INSERT INTO sends (seq, tier, reserved, state, ts) VALUES (2, 'standard', '0.002', 'open', 150)")
        db.execute("UPDATE items SET possibly_billed = 1 WHERE seq = 2")
    db.close()
    return path


def _schema(db: sqlite3.Connection) -> dict[str, object]:
    """Every table's columns and every index, as SQLite reports them (ALTER TABLE and CREATE TABLE
    spell a table differently, so the CREATE text itself is not compared)."""
    out: dict[str, object] = {}
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                                      "ORDER BY name"):
        if kind == "table":
            out[name] = [tuple(r[1:]) for r in db.execute(f"PRAGMA table_info({name})")]
        else:
            out[name] = (kind, sql)
    return out


def test_migration_ids_run_in_order_without_gaps():
    assert [m[0] for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1][0]
    assert len({m[1] for m in MIGRATIONS}) == len(MIGRATIONS)  # each version named once
    # the frozen fixtures are what the store still ships as versions 1 and 2
    assert MIGRATIONS[0][2].strip() == V1_SQL.strip()
    assert MIGRATIONS[1][2].strip() == V2_SQL.strip()


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_a_store_of_an_older_version_opens_with_its_data(tmp_path, version):
    path = _old_store(tmp_path / ".flextier" / "old.db", version)
    s = JobStore(path, create=False)
    assert s.migrations() == [(m[0], m[1]) for m in MIGRATIONS]
    assert s.schema_version() == SCHEMA_VERSION
    job = s.job()
    assert job is not None
    assert (job["name"], job["model"], job["deadline"], job["input_hash"], job["config"], job["out_offset"]) == (
        "old", "openai/gpt-5.4-mini", 4000.0, "abc123", {"concurrency": 8}, 90)
    assert job["out_file"] is None                       # migration 3's column, empty on an old store
    assert s.counts() == {"pending": 1, "inflight": 2, "done": 1, "failed": 1, "total": 5}
    assert s.ledger_totals()["spent"] == Decimal("0.0005")
    assert s.error_counts() == {"FlexCapacityUnavailable": 1, "BadRequest": 1}
    assert s.result_line(0) == _DONE_LINE
    assert [ob["id"] for ob in s.open_batches()] == ["b1"] and s.seqs_in_batch("b1") == [3]
    assert [k for _, k, _ in s.events()] == ["run_start"]
    if version == 1:
        # migration 2 gave the item in flight outside a batch one open send (see MIGRATIONS)
        assert [(seq, tier, state) for _, seq, tier, _, state in s.send_records()] == [(2, "standard", "open")]
    else:
        # the version-2 send records are kept as they were
        assert [(seq, r, state) for _, seq, _, r, state in s.send_records()] == [
            (2, "0.002", "unknown"), (2, "0.002", "open")]
    # the resume after the upgrade: the item in flight goes back to pending, flagged; the batch item stays
    assert s.recover() == 1
    assert s.counts()["inflight"] == 1 and s.counts()["pending"] == 2
    # "b" was flagged by the old version and has no standard cost: it counts at the mean (0.001)
    if version == 1:   # and the open send on "c", unreserved: also at the mean
        assert s.possibly_billed() == (2, Decimal("0.002"))
    else:              # and the two sends on "c" at their reservations
        assert s.possibly_billed() == (3, Decimal("0.005"))
    s.close()
    # opening again applies nothing twice
    with JobStore(path, create=False) as s2:
        assert s2.migrations() == [(m[0], m[1]) for m in MIGRATIONS]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_upgraded_store_has_the_fresh_schema(tmp_path, version):
    """A migration edited in place (a column added to an old version) instead of appended shows here."""
    old = _old_store(tmp_path / "old.db", version)
    JobStore(old, create=False).close()
    JobStore(tmp_path / "fresh.db").close()
    a, b = sqlite3.connect(str(old)), sqlite3.connect(str(tmp_path / "fresh.db"))
    try:
        assert _schema(a) == _schema(b)
    finally:
        a.close()
        b.close()


def test_a_version_3_store_mixes_text_rows_and_compact_rows(tmp_path):
    """After migration 4, new rows are deflated (jobs/compact.py) next to the old TEXT rows; both read back."""
    from flextier.jobs.store import FinishedItem

    path = _old_store(tmp_path / ".flextier" / "old.db", 3)
    with JobStore(path, create=False) as s:
        s.recover()
        line = '{"id":"flextier_req_4","custom_id":"e","response":{"status_code":200,"body":{"x":"' + "y" * 300 + '"}}}'
        s.finish(FinishedItem(seq=4, state="done", result=line, tier="flex", attempts=1, served_tier="flex",
                              cost=Decimal("0.001"), standard_cost=Decimal("0.002"), error_class=None, latency=1.0,
                              finished_at=200.0))
        s.flush()
        assert s.result_line(0) == _DONE_LINE and s.result_line(4) == line
        kinds = dict(s.db.execute("SELECT seq, typeof(result) FROM items WHERE result IS NOT NULL"))
        assert kinds[0] == "text" and kinds[4] == "blob"
        assert {r["seq"]: r["result"] for r in s.iter_items("done")}[4] == line
