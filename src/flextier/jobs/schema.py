"""The job database's schema: numbered migrations, one SQL block per version, in order.

Why numbered migrations (the pattern of Simon Willison's llm): a store written by an older
flextier is upgraded in place when a newer one opens it, so a job started before an upgrade
resumes after it instead of sending (and paying for) everything again. :meth:`JobStore._migrate
<flextier.jobs.store.JobStore._migrate>` applies each version the store has not recorded in its
``schema_migrations`` table, one transaction per version; nothing else reads this text.

Rules: append a new version, never edit an old one (stores already hold it); each block is plain
SQL statements separated by ``;`` with ``--`` comments (no ``;`` or ``--`` inside string literals:
the blocks are split on them). ``tests/jobs/test_store_migrations.py`` keeps versions 1 and 2 as
they shipped and checks that an upgraded store ends with the schema of a fresh one. Every query
against these tables lives in :mod:`flextier.jobs.store`.
"""
from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", """
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
"""),
    # one row per request sent, committed before it leaves (see the module doc).
    # A store upgraded with items in flight (an older flextier crashed) gets one open send for each,
    # so recover() flags them as that version would have.
    (2, "sends", """
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
"""),
    # (2 is jobs-b's durable send records.) 3: the identity (device:inode) of the results file this
    # job created or adopted, so a job never truncates a file another job wrote (see jobs/output.py)
    (3, "output file identity", """
ALTER TABLE job ADD COLUMN out_file TEXT;
"""),
    # 4: the instant a job may start (``run --not-before`` / ``--start auto``) and why, so a job that
    # waits is resumable: a resume waits for the same instant instead of starting at once
    (4, "not before", """
ALTER TABLE job ADD COLUMN not_before REAL;
ALTER TABLE job ADD COLUMN not_before_why TEXT;
"""),
    # 5 (issue 19): a resume reads back from the provider the answers of sends a crash cut off
    # (OpenAI stored completions); such a send goes from 'unknown' to 'settled' (billed, in the
    # ledger, still counted among the cut-off sends). This index finds both on million-item
    # stores. The same version starts storing request and result lines deflated (jobs/compact.py):
    # a BLOB in the same TEXT columns, so rows written before it stay readable as they are.
    (5, "settled sends", """
CREATE INDEX sends_cut_off ON sends(seq) WHERE state IN ('unknown', 'settled');
"""),
    # 6 (issue 19): the provider's id of a send it answers later (an OpenAI Responses background
    # response), recorded once the provider accepted it and before its answer, so a resume after a
    # crash retrieves that response instead of sending (and paying for) the item again
    (6, "remote ids of sends", """
ALTER TABLE sends ADD COLUMN remote TEXT;
"""),
]
# The schema version of a store is the highest migration id it has applied. Ids run 1, 2, 3...
# with no gap, in list order: a new version appends one entry and never edits an old one (a store
# written by that older version already holds it). tests/jobs/test_store_migrations.py opens
# stores built by earlier versions.
SCHEMA_VERSION = MIGRATIONS[-1][0]
if [m[0] for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover - a coding slip
    raise RuntimeError("jobs/schema.py: migration ids must run 1..N in list order")

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]
