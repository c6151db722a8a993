"""One SQLite file per job: the items, their state machine, the attempts and the money.

Why SQLite: it is embedded (no server), survives ``kill -9`` once a transaction has
committed (WAL mode, ``synchronous=NORMAL``: a commit is in the OS page cache, which a
killed process cannot lose), lets ``flextier status`` read while a job runs, and keeps
memory flat: a million items live on disk, not in the runner.

State machine of an item::

    pending --claim--> inflight --ok--> done
                          |  \\--give up--> failed
                          \\--crash--> pending (possibly_billed += its open sends)   [recover()]
    inflight with in_batch set = submitted in a provider batch; a resume
    reattaches to the batch instead of resending.

Writes are batched for speed: the runner queues item results, attempts and ledger rows,
and :meth:`JobStore.flush` applies them in one transaction. The rule that makes batching
safe is *commit before report*: a result reaches the output file and the progress counts
only after the transaction holding it has committed. Claims (pending -> inflight) commit
before the request is sent, so an item sent before a crash is always known as in flight.

Sends: every request that leaves has a row in ``sends``, committed before
it leaves, carrying the money reserved for it (its upper-bound cost under ``--max-cost``).
The runner queues the row when it starts an attempt and the attempt's first step commits
every queued row in one transaction (:meth:`JobStore.commit_sends`: a group commit per
dispatch round, like claims), so batching survives. When the outcome is known the row is
deleted in the flush that records it (its ledger or attempt row): answered or refused, it
is accounted. When the outcome is never learnt (a timeout, a reset, a cancelled copy, or a
crash: :meth:`JobStore.recover`) the row becomes ``unknown`` and the item's
``possibly_billed`` grows by one, in the same transaction. So ``possibly_billed`` counts real
sends, per item, across kills; and ``--max-cost`` counts those sends at their reserved cost
on every later run (spent + possibly billed + reserved never passes the cap).

The output file is derived from the store. Each flush that finalises items stamps them
with a generation number; after the runner has appended their lines to the output it
records the file offset and generation (``job.out_offset``/``out_gen``) in the next
transaction. A resume truncates the file to the recorded offset and rewrites every
finalised item with a newer generation, so each item appears in the output exactly once.

The tables are defined, one numbered migration per version, in :mod:`flextier.jobs.schema`;
every query against them is a named method here (``tests/jobs/test_sql_home.py`` fails on SQL
anywhere else), so the report, ``status``, the runner and the batch lane never see a table.

Secrets: nothing in here ever receives an API key. :func:`redact_url` strips
credentials from base URLs before they are stored.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._migrate import apply_migrations
from .._urls import redact_url  # re-exported: flextier.jobs.store.redact_url keeps working
from ..errors import FlextierError, NoSpace, StoreDamaged, UserInputError  # re-exported
from .compact import pack, unpack  # request and result lines, deflated (jobs/compact.py)
from .input import MAX_REPORTED_ERRORS, InvalidInput, InvalidLine, JobItem
from .schema import MIGRATIONS, SCHEMA_VERSION  # the tables; applied by JobStore._migrate

PENDING, INFLIGHT, DONE, FAILED = "pending", "inflight", "done", "failed"
FINAL_STATES = (DONE, FAILED)
# in_batch of an item taken for the batch lane (claim_for_batch) but not yet in a provider batch:
# the online claim loop cannot take it, and recover() puts it back to pending (it was never sent).
BATCH_RESERVED = "~reserved"



def store_failure(exc: BaseException, path: str | os.PathLike[str]) -> FlextierError | None:
    """The one-line error an SQLite or OS failure on ``path`` stands for, or None (a real bug: re-raise).

    Disk full is :class:`NoSpace` (SQLITE_FULL, ENOSPC, EDQUOT, or an I/O error with no free space
    left); a corrupted or truncated file is :class:`StoreDamaged` naming the file and what to do.
    """
    import errno
    import shutil

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return NoSpace(exc.filename or path)
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    msg = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in msg:
        return NoSpace(path)
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in msg:
        try:
            if shutil.disk_usage(Path(path).resolve().parent).free < (1 << 20):
                return NoSpace(path)
        except OSError:
            pass
        return None
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in msg or "not a database" in msg:
        return StoreDamaged(f"the job store is damaged ({msg}): restore it from a backup, or move it away and run "
                            f"the job again (done items would be sent, and billed, again)", file=str(path))
    return None


def default_store_path(job: str, base: str | os.PathLike[str] | None = None) -> Path:
    """``./.flextier/<job>.db``."""
    return Path(base or ".") / ".flextier" / f"{job}.db"


@dataclass(slots=True)
class ClaimedItem:
    """An item taken for sending: everything the runner needs, nothing more."""

    seq: int
    custom_id: str
    request: str
    attempts: int
    possibly_billed: int
    line: int


def _claimed(row: tuple[Any, ...]) -> "ClaimedItem":
    """A ClaimedItem from ``seq, custom_id, request, attempts, possibly_billed, line`` (request unpacked)."""
    seq, cid, req, attempts, pb, line = row
    return ClaimedItem(seq, cid, unpack(req), attempts, pb, line)


@dataclass(slots=True)
class FinishedItem:
    """A final outcome queued for the next flush."""

    seq: int
    state: str                # done | failed
    result: str               # the output line JSON
    tier: str | None
    attempts: int
    served_tier: str | None
    cost: Decimal | None
    standard_cost: Decimal | None
    error_class: str | None
    latency: float | None
    finished_at: float
    possibly_billed: int = 0
    text: str | None = None   # not stored: handed to in-process result hooks (the Python API)


@dataclass
class ImportReport:
    """What the first pass found."""

    total: int = 0
    invalid: int = 0
    errors: list[InvalidLine] = field(default_factory=list)


@dataclass
class FlushResult:
    """What one committed flush finalised and claimed."""

    finished: list[FinishedItem]
    claimed: list[ClaimedItem]
    gen: int


class JobStore:
    """The SQLite store of one job. Use from one thread (the runner's event loop)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.lock: Any = None  # a JobLock (jobs/lock.py) when this process owns the job
        if not create and not self.path.exists():
            raise UserInputError("no such job store", file=str(self.path))
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise UserInputError(f"cannot open job store: {exc}", file=str(self.path)) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("PRAGMA temp_store=FILE")
            self.db.execute("PRAGMA cache_size=-16000")  # 16 MB page cache, whatever the job size
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            self.db.close()
            err = store_failure(exc, self.path)
            if err is None:
                raise
            raise err from None
        self._finished: list[FinishedItem] = []
        self._attempts: list[tuple[Any, ...]] = []
        self._ledger: list[tuple[Any, ...]] = []
        self._events: list[tuple[Any, ...]] = []
        self._job_updates: dict[str, Any] = {}
        # send records (see the module doc): queued new rows, and outcomes for the next flush
        self._sends_new: list[tuple[int, int, str, str | None, float]] = []
        self._sends_closed: list[tuple[int]] = []
        self._sends_lost: list[tuple[int]] = []
        self._next_send = int(self._scalar("SELECT COALESCE(MAX(id), 0) FROM sends") or 0) + 1
        self.recovered_sends = 0   # sends found open by the last recover(): in flight at a crash
        self._gen = self._scalar("SELECT COALESCE(MAX(out_gen), 0) FROM items") or 0

    # -- schema ----------------------------------------------------------------------
    def _migrate(self) -> None:
        """Apply, in order, each migration this file has not recorded (:func:`flextier._migrate.apply_migrations`)."""
        apply_migrations(self.db, MIGRATIONS)

    def migrations(self) -> list[tuple[int, str]]:
        """(id, name) of every migration this store has applied, in order."""
        return [(r[0], r[1]) for r in self.db.execute("SELECT id, name FROM schema_migrations ORDER BY id")]

    def schema_version(self) -> int:
        """The highest migration applied (:data:`SCHEMA_VERSION` once opened by this flextier)."""
        return max((mid for mid, _ in self.migrations()), default=0)

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:  # pragma: no cover
            pass
        lock, self.lock = getattr(self, "lock", None), None
        if lock is not None:
            lock.release()  # the job's owner lock (jobs/lock.py) goes with the store it guards

    def discard(self) -> None:
        """Close the database and delete its files (a store created for nothing: an empty job that
        is refused). The owner lock stays until :meth:`close`, which the caller still calls."""
        self.db.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except OSError:
                pass

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _scalar(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None

    # -- job -------------------------------------------------------------------------
    def job(self) -> dict[str, Any] | None:
        """The job row as a dict (``config`` decoded), or None for a fresh store."""
        cur = self.db.execute("SELECT * FROM job WHERE id = 1")
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["config"] = json.loads(d["config"] or "{}")
        return d

    def create_job(self, *, name: str, model: str, tier_mode: str, created_at: float,
                   config: dict[str, Any], **fields: Any) -> None:
        """Write the job row (fresh store). ``config`` must not contain secrets."""
        _assert_no_secrets(config)
        cols = {"id": 1, "name": name, "model": model, "tier_mode": tier_mode, "created_at": created_at,
                "config": json.dumps(config, sort_keys=True), **fields}
        self.db.execute(f"INSERT INTO job ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        tuple(cols.values()))

    def update_job(self, **fields: Any) -> None:
        """Change job fields now (autocommit)."""
        if "config" in fields:
            _assert_no_secrets(fields["config"])
            fields["config"] = json.dumps(fields["config"], sort_keys=True)
        if fields:
            self.db.execute(f"UPDATE job SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = 1",
                            tuple(fields.values()))

    def queue_job_update(self, **fields: Any) -> None:
        """Change job fields in the next flush (e.g. ``last_clock``)."""
        self._job_updates.update(fields)

    def set_not_before(self, ts: float | None, why: str | None = None) -> None:
        """The instant (job clock) before which nothing is sent, and why; None clears it."""
        self.db.execute("UPDATE job SET not_before = ?, not_before_why = ? WHERE id = 1",
                        (ts, None if ts is None else why))

    def not_before(self) -> tuple[float | None, str | None]:
        """(instant, why) set by :meth:`set_not_before`, or (None, None)."""
        row = self.db.execute("SELECT not_before, not_before_why FROM job WHERE id = 1").fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def event(self, ts: float, kind: str, detail: Any = None) -> None:
        """Queue an event row (run start, safety net, budget pause...) for the next flush."""
        self._events.append((ts, kind, None if detail is None else json.dumps(detail, default=str)))

    # -- import (the first pass) -----------------------------------------------------
    def import_items(self, records: Iterable[JobItem | InvalidLine], *, file: str, skip_invalid: bool,
                     chunk: int = 5000, commit_every: int = 50_000) -> ImportReport:
        """Stream validated records into ``items``; detect duplicate ids with the UNIQUE index.

        Raises :class:`InvalidInput` (and leaves no items behind) when any record is
        invalid and ``skip_invalid`` is false. Memory is bounded by ``chunk``.
        """
        rep = ImportReport()
        self.db.execute("DELETE FROM items")
        seq = 0
        buf: list[JobItem] = []
        since_commit = 0
        self.db.execute("BEGIN")

        def note(bad: InvalidLine) -> None:
            rep.invalid += 1
            if len(rep.errors) < MAX_REPORTED_ERRORS:
                rep.errors.append(bad)

        def insert() -> None:
            nonlocal seq, since_commit
            rows = []
            for it in buf:
                rows.append((seq, it.custom_id, it.line, pack(it.request)))
                seq += 1
            cur = self.db.executemany(
                "INSERT INTO items (seq, custom_id, line, request) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(custom_id) DO NOTHING", rows)
            inserted = cur.rowcount
            if inserted != len(rows):  # rare: find the duplicates
                for it in buf:
                    first = self._scalar("SELECT line FROM items WHERE custom_id = ?", (it.custom_id,))
                    if first is not None and first != it.line:
                        fld = "custom_id" if "custom_id" in json.loads(it.request) else "id"
                        note(InvalidLine(it.line, fld, f"duplicate id {it.custom_id[:80]!r} (first on line {first})",
                                         it.custom_id))
            rep.total += inserted
            since_commit += len(rows)
            buf.clear()
            if since_commit >= commit_every:
                self.db.execute("COMMIT")
                self.db.execute("BEGIN")
                since_commit = 0

        try:
            for rec in records:
                if isinstance(rec, InvalidLine):
                    note(rec)
                    continue
                buf.append(rec)
                if len(buf) >= chunk:
                    insert()
            if buf:
                insert()
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        if rep.invalid and not skip_invalid:
            self.db.execute("DELETE FROM items")
            raise InvalidInput(file, [e.to_error(file) for e in rep.errors], rep.invalid)
        self.update_job(total=rep.total, skipped_invalid=rep.invalid, state="ready")
        return rep

    def append_items(self, items: list[JobItem]) -> list[InvalidLine]:
        """Add items to a running job (streamed Python input). Returns the duplicates refused."""
        if not items:
            return []
        start = self._scalar("SELECT COALESCE(MAX(seq), -1) FROM items") + 1
        dups: list[InvalidLine] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for i, it in enumerate(items):
                cur = self.db.execute("INSERT INTO items (seq, custom_id, line, request) VALUES (?, ?, ?, ?) "
                                      "ON CONFLICT(custom_id) DO NOTHING", (start + i, it.custom_id, it.line, pack(it.request)))
                if cur.rowcount == 0:
                    first = self._scalar("SELECT line FROM items WHERE custom_id = ?", (it.custom_id,))
                    dups.append(InvalidLine(it.line, "id", f"duplicate id {it.custom_id[:80]!r} (first at {first})",
                                            it.custom_id))
            self.db.execute("UPDATE job SET total = (SELECT COUNT(*) FROM items) WHERE id = 1")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return dups

    # -- resume ------------------------------------------------------------------------
    def recover(self) -> int:
        """After a crash: items that were in flight go back to pending.

        Each send still open (committed before it left, outcome never recorded) becomes
        ``unknown`` and adds one to its item's ``possibly_billed``; an item that was claimed
        but never sent (held back by the budget, or queued) is not flagged. Items inside a
        provider batch (``in_batch``) are left alone: the batch lane reattaches to them.
        Returns how many items were recovered; :attr:`recovered_sends` says how many sends.
        """
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE items SET possibly_billed = possibly_billed + (SELECT COUNT(*) FROM sends "
                       "WHERE sends.seq = items.seq AND sends.state = 'open') "
                       "WHERE seq IN (SELECT seq FROM sends WHERE state = 'open')")
            self.recovered_sends = db.execute("UPDATE sends SET state = 'unknown' WHERE state = 'open'").rowcount
            n = db.execute("UPDATE items SET state = 'pending' WHERE state = 'inflight' AND in_batch IS NULL").rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.unreserve()  # taken for a batch that was never created: never sent, not billed
        return n

    def unknown_send_items(self) -> list[tuple[ClaimedItem, str, int]]:
        """(item, tier of its latest unknown send, unknown sends) of the pending online items whose
        sends a crash (or a cut-off answer) left unknown: the ones a provider-side lookup may settle."""
        rows = self.db.execute(
            "SELECT i.seq, i.custom_id, i.request, i.attempts, i.possibly_billed, i.line, "
            "(SELECT tier FROM sends s WHERE s.seq = i.seq AND s.state = 'unknown' ORDER BY s.id DESC LIMIT 1), "
            "(SELECT COUNT(*) FROM sends s WHERE s.seq = i.seq AND s.state = 'unknown') "
            "FROM items i WHERE i.state = 'pending' AND i.in_batch IS NULL AND i.seq IN "
            "(SELECT seq FROM sends WHERE state = 'unknown') ORDER BY i.seq").fetchall()
        return [(_claimed(r[:6]), r[6], r[7]) for r in rows]

    def settle_unknown_sends(self, seq: int, n: int) -> int:
        """``n`` of item ``seq``'s unknown sends turned out answered: the provider kept the answers,
        which the caller records as billed. They become ``settled``: still counted among the sends a
        crash cut off (``items.possibly_billed``, the report's figure), no longer in the money bound
        of :meth:`possibly_billed` (their cost is in the ledger now). Returns how many."""
        ids = [i for (i,) in self.db.execute("SELECT id FROM sends WHERE seq = ? AND state = 'unknown' "
                                             "ORDER BY id LIMIT ?", (seq, n))]
        if ids:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("UPDATE sends SET state = 'settled' WHERE id = ?", [(i,) for i in ids])
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return len(ids)

    def settled_sends(self) -> int:
        """Cut-off sends whose answers were read back from the provider (see :meth:`settle_unknown_sends`)."""
        return self.db.execute("SELECT COUNT(*) FROM sends WHERE state = 'settled'").fetchone()[0]

    def release(self, seqs: Iterable[int], *, possibly_billed: Iterable[int] = ()) -> None:
        """A graceful stop: unsent items go back to pending; interrupted sends are flagged."""
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE items SET state = 'pending' WHERE seq = ? AND state = 'inflight'",
                            [(s,) for s in seqs])
        self.db.executemany("UPDATE items SET state = 'pending', possibly_billed = possibly_billed + 1 "
                            "WHERE seq = ? AND state = 'inflight'", [(s,) for s in possibly_billed])
        self.db.execute("COMMIT")

    def reset_failed(self) -> int:
        """``--retry-failed``: failed items become pending again (their output lines are rewritten)."""
        return self.db.execute("UPDATE items SET state = 'pending', result = NULL, out_gen = NULL "
                               "WHERE state = 'failed'").rowcount

    # -- the batched writer ------------------------------------------------------------
    def add_attempt(self, seq: int, tier: str, outcome: str, latency: float | None, status: int | None,
                    error_code: str | None, possibly_billed: bool, ts: float) -> None:
        self._attempts.append((seq, tier, outcome, latency, status, error_code, int(possibly_billed), ts))

    def add_ledger(self, ts: float, seq: int, tier: str, cost: Decimal | None, standard_cost: Decimal | None,
                   input_tokens: int, output_tokens: int, kind: str = "billed") -> None:
        self._ledger.append((ts, seq, tier, None if cost is None else str(cost),
                             None if standard_cost is None else str(standard_cost),
                             input_tokens, output_tokens, kind))

    # -- send records (see the module doc) ------------------------------
    def open_send(self, seq: int, tier: str, reserved: Decimal | None, ts: float) -> int:
        """Queue the record of a send about to leave; returns its id. It must be committed
        (:meth:`commit_sends`) before the request goes out."""
        sid = self._next_send
        self._next_send += 1
        self._sends_new.append((sid, seq, tier, None if reserved is None else str(reserved), ts))
        return sid

    def send_committed(self, sid: int) -> bool:
        """True when send ``sid``'s record is durable (ids grow, the queue is in id order)."""
        return not self._sends_new or sid < self._sends_new[0][0]

    def commit_sends(self) -> None:
        """Commit every queued send record now, in one transaction (a group commit: all the
        attempts started in one dispatch round share it)."""
        if not self._sends_new:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO sends (id, seq, tier, reserved, ts) VALUES (?, ?, ?, ?, ?)",
                           self._sends_new)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._sends_new = []

    def close_send(self, sid: int) -> None:
        """The send's outcome is known (answered, refused, never sent): drop its record in the
        next flush, together with the rows that account for it."""
        self._sends_closed.append((sid,))

    def lose_send(self, sid: int) -> None:
        """The send's outcome will never be known (timeout, reset, cancelled): in the next flush
        it becomes ``unknown`` and its item's ``possibly_billed`` grows by one."""
        self._sends_lost.append((sid,))

    def note_remote(self, sid: int, remote: str) -> None:
        """The provider's id of send ``sid`` (it answers later: an OpenAI Responses background
        response), committed now, before the answer, so a resume can retrieve it (schema 6).
        The send's own record was committed before the request left (:meth:`commit_sends`)."""
        db = self.db
        if db.in_transaction:  # pragma: no cover - the runner never holds a transaction across a send
            db.execute("UPDATE sends SET remote = ? WHERE id = ?", (remote, sid))
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE sends SET remote = ? WHERE id = ?", (remote, sid))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def unknown_remote_ids(self) -> dict[int, list[str]]:
        """Item seq -> the provider ids of its unknown sends that have one (:meth:`note_remote`), oldest first."""
        out: dict[int, list[str]] = {}
        for seq, remote in self.db.execute("SELECT seq, remote FROM sends WHERE state = 'unknown' "
                                           "AND remote IS NOT NULL ORDER BY id"):
            out.setdefault(seq, []).append(remote)
        return out

    def send_records(self) -> list[tuple[int, int, str, str | None, str]]:
        """(id, seq, tier, reserved, state) of every send not accounted by an answer or a refusal:
        ``open`` (out now, or at a crash not yet recovered) or ``unknown`` (possibly billed)."""
        return list(self.db.execute("SELECT id, seq, tier, reserved, state FROM sends ORDER BY id"))

    def finish(self, item: FinishedItem) -> None:
        """Queue a final outcome. It is durable (and may be reported) after the next flush."""
        self._finished.append(item)

    def is_final(self, seq: int) -> bool:
        """True when item ``seq`` has a final result, committed or queued for the next flush.

        First result wins: an item can be answered by a batch and by the online lanes (after a
        straggler rescue); whoever records second must check this and write only a
        ``duplicate`` ledger row, never a second result.
        """
        if any(f.seq == seq for f in self._finished):
            return True
        row = self.db.execute("SELECT state FROM items WHERE seq = ?", (seq,)).fetchone()
        return row is not None and row[0] in FINAL_STATES

    @property
    def backlog(self) -> int:
        """Rows waiting for the next flush."""
        return len(self._finished) + len(self._attempts) + len(self._ledger) + len(self._sends_closed)

    def flush(self, *, claim: int = 0, out_offset: int | None = None, out_gen: int | None = None,
              out_next_seq: int | None = None) -> FlushResult:
        """Apply everything queued in one transaction, optionally claiming up to ``claim`` items.

        ``out_*`` record how far the output file has been written (see the module doc).
        Only after this returns may the caller report the finished items anywhere.
        """
        finished, self._finished = self._finished, []
        gen = self._gen + 1 if finished else self._gen
        claimed: list[ClaimedItem] = []
        sends_new, sends_lost, sends_closed = self._sends_new, self._sends_lost, self._sends_closed
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if sends_new:
                db.executemany("INSERT INTO sends (id, seq, tier, reserved, ts) VALUES (?, ?, ?, ?, ?)", sends_new)
            if sends_lost:  # items.possibly_billed counts unknown sends: both change together
                db.executemany("UPDATE items SET possibly_billed = possibly_billed + 1 WHERE seq = "
                               "(SELECT seq FROM sends WHERE id = ? AND state = 'open')", sends_lost)
                db.executemany("UPDATE sends SET state = 'unknown' WHERE id = ? AND state = 'open'", sends_lost)
            if sends_closed:
                db.executemany("DELETE FROM sends WHERE id = ? AND state = 'open'", sends_closed)
            if finished:
                # possibly_billed is not written here: the send records above keep it
                db.executemany(
                    "UPDATE items SET state = ?, result = ?, tier = ?, attempts = ?, served_tier = ?, cost = ?, "
                    "standard_cost = ?, error_class = ?, latency = ?, finished_at = ?, out_gen = ? "
                    "WHERE seq = ?",
                    [(f.state, pack(f.result), f.tier, f.attempts, f.served_tier,
                      None if f.cost is None else str(f.cost),
                      None if f.standard_cost is None else str(f.standard_cost),
                      f.error_class, f.latency, f.finished_at, gen, f.seq) for f in finished])
            if self._attempts:
                db.executemany("INSERT INTO attempts (seq, tier, outcome, latency, status, error_code, "
                               "possibly_billed, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._attempts)
                self._attempts = []
            if self._ledger:
                db.executemany("INSERT INTO ledger (ts, seq, tier, cost, standard_cost, input_tokens, "
                               "output_tokens, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._ledger)
                self._ledger = []
            if self._events:
                db.executemany("INSERT INTO events (ts, kind, detail) VALUES (?, ?, ?)", self._events)
                self._events = []
            upd = dict(self._job_updates)
            self._job_updates = {}
            if out_offset is not None:
                upd["out_offset"] = out_offset
            if out_gen is not None:
                upd["out_gen"] = out_gen
            if out_next_seq is not None:
                upd["out_next_seq"] = out_next_seq
            if upd:
                db.execute(f"UPDATE job SET {', '.join(f'{k} = ?' for k in upd)} WHERE id = 1", tuple(upd.values()))
            if claim > 0:
                rows = db.execute(
                    "UPDATE items SET state = 'inflight' WHERE seq IN "
                    "(SELECT seq FROM items WHERE state = 'pending' ORDER BY seq LIMIT ?) "
                    "RETURNING seq, custom_id, request, attempts, possibly_billed, line", (claim,)).fetchall()
                rows.sort()
                claimed = [_claimed(r) for r in rows]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # put the work back so a retry of flush() loses nothing
            self._finished = finished + self._finished
            raise
        if sends_new:
            self._sends_new = self._sends_new[len(sends_new):]
        self._sends_lost = self._sends_lost[len(sends_lost):]
        self._sends_closed = self._sends_closed[len(sends_closed):]
        self._gen = gen
        return FlushResult(finished, claimed, gen)

    # -- output reconstruction -------------------------------------------------------
    def results_after_gen(self, gen: int) -> Iterator[tuple[int, str]]:
        """(seq, output line) of finalised items not yet known to be in the output (unordered mode)."""
        for seq, r in self.db.execute("SELECT seq, result FROM items WHERE out_gen > ? AND result IS NOT NULL "
                                      "ORDER BY seq", (gen,)):
            yield seq, unpack(r)

    def final_prefix(self, seq: int, limit: int = 1000) -> list[tuple[int, str]]:
        """(seq, output line) of the finalised items from ``seq`` on, up to the first unfinished one.

        Ordered mode writes these. States are read first, so a stuck head item costs one
        cheap query rather than loading result bodies that cannot be written yet.
        """
        rows = self.db.execute("SELECT seq, state FROM items WHERE seq >= ? ORDER BY seq LIMIT ?",
                               (seq, limit)).fetchall()
        last = None
        for s, state in rows:
            if state not in FINAL_STATES:
                break
            last = s
        if last is None:
            return []
        return [(s, unpack(r)) for s, r in self.db.execute(
            "SELECT seq, result FROM items WHERE seq >= ? AND seq <= ? ORDER BY seq", (seq, last))]

    def written_results(self, ordered: bool) -> Iterator[str]:
        """The output lines the store says the results file holds, up to its recorded offset.

        Unordered: every result stamped with a generation up to ``job.out_gen``; ordered: every
        result before ``job.out_next_seq``. :class:`~flextier.jobs.output.OutputSink` checks the
        file against these by content.
        """
        job = self.job() or {}
        if ordered:
            cur = self.db.execute("SELECT result FROM items WHERE seq < ? AND result IS NOT NULL",
                                  (job.get("out_next_seq", 0),))
        else:
            cur = self.db.execute("SELECT result FROM items WHERE out_gen IS NOT NULL AND out_gen <= ? "
                                  "AND result IS NOT NULL", (job.get("out_gen", 0),))
        for (r,) in cur:
            yield unpack(r)

    def reset_output(self) -> None:
        """The output file is gone or changed: regenerate it from scratch on the next run."""
        self.update_job(out_offset=0, out_gen=0, out_next_seq=0)

    # -- reading -----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Items per state (pending, inflight, done, failed) plus ``total``."""
        out = {PENDING: 0, INFLIGHT: 0, DONE: 0, FAILED: 0}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            out[state] = n
        out["total"] = sum(out.values())
        return out

    def open_request_sample(self, limit: int = 1000) -> list[str]:
        """The stored requests of at most ``limit`` items not yet final (pending or in flight),
        spread evenly over the job by ``seq``: what ``--start auto`` sizes the job by
        (:func:`flextier.jobs.work.job_token_estimate`) without reading a million rows."""
        n = self._scalar("SELECT COUNT(*) FROM items WHERE state IN (?, ?)", (PENDING, INFLIGHT)) or 0
        stride = max(1, -(-int(n) // max(1, limit)))
        rows = self.db.execute("SELECT request FROM (SELECT request, ROW_NUMBER() OVER (ORDER BY seq) AS k "
                               "FROM items WHERE state IN (?, ?)) WHERE (k - 1) % ? = 0 LIMIT ?",
                               (PENDING, INFLIGHT, stride, limit))
        return [unpack(r) for (r,) in rows]

    def tier_counts(self) -> dict[str, int]:
        """Done items per served tier."""
        return {t or "unknown": n for t, n in
                self.db.execute("SELECT served_tier, COUNT(*) FROM items WHERE state = 'done' GROUP BY served_tier")}

    def possibly_billed(self) -> tuple[int, Decimal]:
        """Sends whose billing is unknown, and an upper bound of that spend.

        A send recorded with a reservation (every send of a ``--max-cost`` job) counts at that
        reserved upper-bound cost: this is also what later runs hold against the cap. Other
        such sends (no cap, or flagged by a store older than the send records) are priced at
        the item's own standard cost when it finished (or the mean standard cost per done item).
        """
        reserved: dict[int, tuple[int, Decimal]] = {}
        for seq, r in self.db.execute("SELECT seq, reserved FROM sends WHERE state = 'unknown' "
                                      "AND reserved IS NOT NULL"):
            k, tot = reserved.get(seq, (0, Decimal(0)))
            reserved[seq] = (k + 1, tot + Decimal(r))
        settled: dict[int, int] = dict(self.db.execute(
            "SELECT seq, COUNT(*) FROM sends WHERE state = 'settled' GROUP BY seq").fetchall())
        n = 0
        bound = Decimal(0)
        mean: Decimal | None = None
        for seq, pb, sc in self.db.execute("SELECT seq, possibly_billed, standard_cost FROM items "
                                           "WHERE possibly_billed > 0"):
            n += pb
            k, tot = reserved.get(seq, (0, Decimal(0)))
            k += settled.get(seq, 0)   # read back from the provider: billed, and in the ledger
            bound += tot
            if pb > k:
                if not sc and mean is None:
                    mean = self.mean_standard_cost()
                bound += (Decimal(sc) if sc else mean or Decimal(0)) * (pb - k)
        return n, bound

    def mean_standard_cost(self) -> Decimal:
        tot, k = Decimal(0), 0
        for (sc,) in self.db.execute("SELECT standard_cost FROM ledger WHERE standard_cost IS NOT NULL "
                                     "ORDER BY id DESC LIMIT 1000"):
            tot += Decimal(sc)
            k += 1
        return tot / k if k else Decimal(0)

    def ledger_totals(self) -> dict[str, Any]:
        """Spend by served tier, total spend, and the standard-price cost of the same work."""
        by_tier: dict[str, Decimal] = {}
        spent = std = Decimal(0)
        unknown = 0
        std_by_tier: dict[str, Decimal] = {}
        for tier, cost, sc in self.db.execute("SELECT tier, cost, standard_cost FROM ledger WHERE kind = 'billed'"):
            if cost is None:
                unknown += 1
            else:
                c = Decimal(cost)
                spent += c
                by_tier[tier] = by_tier.get(tier, Decimal(0)) + c
            if sc is not None:
                std += Decimal(sc)
                std_by_tier[tier] = std_by_tier.get(tier, Decimal(0)) + Decimal(sc)
        # "duplicate" rows: answers the provider billed that lost the first-result race (a batch
        # copy and an online copy of a rescued item); not the item's result, still money spent
        dup_n, dup_cost = 0, Decimal(0)
        for (cost,) in self.db.execute("SELECT cost FROM ledger WHERE kind = 'duplicate'"):
            dup_n += 1
            dup_cost += Decimal(cost) if cost is not None else Decimal(0)
        return {"spent": spent, "standard": std, "by_tier": by_tier, "standard_by_tier": std_by_tier,
                "unknown_cost_rows": unknown, "duplicates": dup_n, "duplicate_cost": dup_cost,
                "billed_total": spent + dup_cost}

    def error_counts(self) -> dict[str, int]:
        return {o: n for o, n in self.db.execute("SELECT outcome, COUNT(*) FROM attempts WHERE outcome != 'ok' "
                                                 "GROUP BY outcome")}

    def iter_ledger(self) -> Iterator[tuple[float, int, str, str | None, str | None]]:
        yield from self.db.execute("SELECT ts, seq, tier, cost, standard_cost FROM ledger ORDER BY ts, id")

    def iter_attempts(self) -> Iterator[tuple[int, str, str, float | None, float]]:
        yield from self.db.execute("SELECT seq, tier, outcome, latency, ts FROM attempts ORDER BY ts, id")

    def iter_attempt_rows(self) -> Iterator[tuple[int, str, str, float | None, float, int | None, str | None, int]]:
        """Every attempt row in full (seq, tier, outcome, latency, ts, status, error_code,
        possibly_billed): for merging the batch stores of a Ray job (flextier.ray.state)."""
        yield from self.db.execute("SELECT seq, tier, outcome, latency, ts, status, error_code, possibly_billed "
                                   "FROM attempts ORDER BY id")

    def iter_ledger_rows(self) -> Iterator[tuple[float, int, str, str | None, str | None, int, int, str]]:
        """Every ledger row in full (ts, seq, tier, cost, standard_cost, input_tokens,
        output_tokens, kind): for merging the batch stores of a Ray job (flextier.ray.state)."""
        yield from self.db.execute("SELECT ts, seq, tier, cost, standard_cost, input_tokens, output_tokens, kind "
                                   "FROM ledger ORDER BY id")

    def iter_items(self, state: str | None = None) -> Iterator[dict[str, Any]]:
        """Full item rows as dicts, request and result as text (for tests and tools)."""
        cur = self.db.cursor()
        cur.row_factory = sqlite3.Row
        rows = (cur.execute("SELECT * FROM items WHERE state = ? ORDER BY seq", (state,)) if state
                else cur.execute("SELECT * FROM items ORDER BY seq"))
        for r in rows:
            d = dict(r)
            d["request"], d["result"] = unpack(d["request"]), unpack(d["result"])
            yield d

    def events(self) -> list[tuple[float, str, Any]]:
        return [(ts, k, json.loads(d) if d else None)
                for ts, k, d in self.db.execute("SELECT ts, kind, detail FROM events ORDER BY id")]

    def last_finished_at(self) -> float | None:
        """When the last item reached a final state (done or failed); None before any did.

        The report's "MISSED" and the exit code 4 both compare this with the deadline."""
        return self.db.execute("SELECT MAX(finished_at) FROM items WHERE state IN ('done','failed')").fetchone()[0]

    def attempt_span(self) -> tuple[float | None, float | None]:
        """(first, last) attempt time; (None, None) before any attempt."""
        first_ts, last_ts = self.db.execute("SELECT MIN(ts), MAX(ts) FROM attempts").fetchone()
        return first_ts, last_ts

    def ok_latency_counts(self) -> list[tuple[str, int]]:
        """(tier, n) of successful attempts with a measured latency, per tier."""
        return self.db.execute("SELECT tier, COUNT(*) FROM attempts WHERE outcome = 'ok' AND latency IS NOT NULL "
                               "GROUP BY tier").fetchall()

    def ok_latency_sample(self, tier: str, stride: int) -> list[float]:
        """Latencies of successful attempts on ``tier``: every ``stride``-th attempt id (a bounded sample)."""
        return [v for (v,) in self.db.execute(
            "SELECT latency FROM attempts WHERE outcome = 'ok' AND tier = ? AND latency IS NOT NULL AND id % ? = 0",
            (tier, stride))]

    def done_per_slice(self, t0: float, width: float) -> list[tuple[int, str | None, int]]:
        """(slice, served tier, n) of done items, the slice being ``(finished_at - t0) // width``."""
        return self.db.execute("SELECT CAST((finished_at - ?) / ? AS INTEGER), served_tier, COUNT(*) FROM items "
                               "WHERE state = 'done' AND finished_at IS NOT NULL GROUP BY 1, 2", (t0, width)).fetchall()

    def attempts_per_slice(self, t0: float, width: float) -> list[tuple[int, str, str, int]]:
        """(slice, tier, outcome, n) of every attempt, the slice being ``(ts - t0) // width``."""
        return self.db.execute(
            "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, tier, outcome, COUNT(*) FROM attempts GROUP BY 1, 2, 3",
            (t0, width)).fetchall()

    def flex_attempt_spans(self) -> list[tuple[float, float]]:
        """(start, end) of every flex attempt with a measured latency (start = ts - latency): the
        benchmarks' achieved flex concurrency."""
        return self.db.execute("SELECT ts - latency, ts FROM attempts WHERE tier = 'flex' AND latency IS NOT NULL"
                               ).fetchall()

    def ledger_rows(self) -> int:
        """How many ledger rows the job has (billed and duplicate)."""
        return self.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]

    def inflight_in_batch(self) -> int:
        """Items in flight inside a provider batch (or taken for one): ``flextier status`` shows them."""
        return self.db.execute("SELECT COUNT(*) FROM items WHERE state = 'inflight' AND in_batch IS NOT NULL"
                               ).fetchone()[0]

    def result_line(self, seq: int) -> str | None:
        """Item ``seq``'s recorded output line, or None (no result yet, or no such item)."""
        row = self.db.execute("SELECT result FROM items WHERE seq = ?", (seq,)).fetchone()
        return unpack(row[0]) if row else None

    @property
    def generation(self) -> int:
        """The output generation of the last flush that finalised items (see the module doc)."""
        return self._gen

    # -- items by custom id (the batch lane speaks in item ids) -------------------------------
    def _by_custom_id(self, custom_ids: Iterable[str], cols: str) -> Iterator[tuple[Any, ...]]:
        """``cols`` of the items with these custom ids, queried in chunks of 500 (SQLite's
        parameter limit); unknown ids are skipped. ``cols`` is a fixed string of this module."""
        ids = list(custom_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            yield from self.db.execute(
                f"SELECT {cols} FROM items WHERE custom_id IN ({','.join('?' * len(part))})", part)

    def seqs_of(self, custom_ids: Iterable[str]) -> list[int]:
        """Sequence numbers of the items with these custom ids (unknown ids are skipped)."""
        return [s for (s,) in self._by_custom_id(custom_ids, "seq")]

    def seq_by_custom_id(self, custom_ids: Iterable[str]) -> dict[str, int]:
        """custom id -> sequence number, for the ids that are items of this job."""
        return {cid: seq for cid, seq in self._by_custom_id(custom_ids, "custom_id, seq")}

    def requests_of(self, custom_ids: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(custom id, request line) of the items with these ids."""
        for cid, req in self._by_custom_id(custom_ids, "custom_id, request"):
            yield cid, unpack(req)

    def batch_membership(self, custom_ids: Iterable[str]) -> Iterator[tuple[int, str | None]]:
        """(seq, in_batch) of the items with these ids: the batch each one is in, if any."""
        yield from self._by_custom_id(custom_ids, "seq, in_batch")

    def states_of(self, custom_ids: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(custom id, state) of the items with these ids."""
        yield from self._by_custom_id(custom_ids, "custom_id, state")

    def item_for_result(self, custom_id: str) -> tuple[int, str, str | None, str | None, int, int] | None:
        """(seq, state, in_batch, tier, attempts, possibly_billed) of one item, to record a batch
        result against; None when the id is not an item of this job."""
        return next(self._by_custom_id([custom_id], "seq, state, in_batch, tier, attempts, possibly_billed"), None)

    # -- batch lane --------------------------------------------------------
    def create_batch(self, batch_id: str, provider: str, seqs: list[int], *, created_at: float,
                     endpoint: str | None = None, meta: dict[str, Any] | None = None) -> None:
        """Record a provider batch and move its items to inflight-in-batch, atomically."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT INTO batches (id, provider, state, endpoint, created_at, item_count, meta) "
                            "VALUES (?, ?, 'preparing', ?, ?, ?, ?)",
                            (batch_id, provider, endpoint, created_at, len(seqs), json.dumps(meta or {})))
            self.db.executemany("UPDATE items SET state = 'inflight', in_batch = ?, tier = 'batch' WHERE seq = ?",
                                [(batch_id, s) for s in seqs])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def update_batch(self, batch_id: str, **fields: Any) -> None:
        if "meta" in fields:
            fields["meta"] = json.dumps(fields["meta"])
        self.db.execute(f"UPDATE batches SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                        (*fields.values(), batch_id))

    def open_batches(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM batches WHERE state NOT IN ('completed', 'expired', 'cancelled', "
                              "'failed') ORDER BY created_at")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def seqs_in_batch(self, batch_id: str) -> list[int]:
        """Sequence numbers of the items recorded inside batch ``batch_id`` (any state)."""
        return [s for (s,) in self.db.execute("SELECT seq FROM items WHERE in_batch = ?", (batch_id,))]

    def custom_ids_in_batch(self, batch_id: str) -> list[str]:
        """Custom ids of the items recorded inside batch ``batch_id``, in input order."""
        return [r[0] for r in self.db.execute("SELECT custom_id FROM items WHERE in_batch = ? ORDER BY seq",
                                              (batch_id,))]

    def batch_meta(self, batch_id: str) -> dict[str, Any]:
        """The batch's ``meta`` JSON decoded ({} for an unknown batch or an empty one)."""
        row = self.db.execute("SELECT meta FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return json.loads((row[0] if row else None) or "{}")

    def abandon_batch(self, batch_id: str, meta: dict[str, Any], seqs: Iterable[int]) -> None:
        """Record ``meta`` (which says the batch was abandoned) and hand ``seqs`` back to the online
        lanes (:meth:`leave_batch`), in one transaction: a crash leaves both or neither."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self.update_batch(batch_id, meta=meta)
            self.leave_batch(seqs)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def batch_items(self, batch_id: str) -> list[ClaimedItem]:
        return [_claimed(r) for r in self.db.execute(
            "SELECT seq, custom_id, request, attempts, possibly_billed, line FROM items "
            "WHERE in_batch = ? AND state = 'inflight' ORDER BY seq", (batch_id,))]

    def leave_batch(self, seqs: Iterable[int]) -> None:
        """Items abandoned from a batch (straggler rescue) go back to the online lanes."""
        self.db.executemany("UPDATE items SET in_batch = NULL, state = 'pending' WHERE seq = ? AND "
                            "state = 'inflight'", [(s,) for s in seqs])

    def claim_for_batch(self) -> int:
        """Take every pending item for the batch lane (``in_batch = BATCH_RESERVED``), atomically.

        The online claim loop (:meth:`flush` with ``claim``) only takes pending items, so these
        cannot be sent twice; :meth:`JobStore.create_batch` then moves them into real batches.
        Returns how many were taken; read them with :meth:`reserved_items`.
        """
        return self.db.execute("UPDATE items SET state = 'inflight', in_batch = ? WHERE state = 'pending'",
                               (BATCH_RESERVED,)).rowcount

    def reserved_items(self, after_seq: int = -1, limit: int = 1000) -> list[ClaimedItem]:
        """Items taken by :meth:`claim_for_batch` and not yet in a batch, in input order."""
        return [_claimed(r) for r in self.db.execute(
            "SELECT seq, custom_id, request, attempts, possibly_billed, line FROM items "
            "WHERE in_batch = ? AND state = 'inflight' AND seq > ? ORDER BY seq LIMIT ?",
            (BATCH_RESERVED, after_seq, limit))]

    def unreserve(self, seqs: Iterable[int] | None = None) -> int:
        """Reserved items (all, or these) that never entered a batch go back to pending."""
        if seqs is None:
            return self.db.execute("UPDATE items SET state = 'pending', in_batch = NULL WHERE in_batch = ? "
                                   "AND state = 'inflight'", (BATCH_RESERVED,)).rowcount
        cur = self.db.executemany("UPDATE items SET state = 'pending', in_batch = NULL WHERE seq = ? AND "
                                  "in_batch = ? AND state = 'inflight'", [(s, BATCH_RESERVED) for s in seqs])
        return cur.rowcount

    def open_batch_submitted_at(self) -> float | None:
        """The earliest submission time among open batches (the planner's ``batch_submitted_at``).

        A batch abandoned by a straggler rescue stays open until its late output is collected,
        but it holds none of the job's items any more: it must not make a newer batch look old
        (the planner would rescue that one early)."""
        return self._scalar("SELECT MIN(COALESCE(submitted_at, created_at)) FROM batches WHERE state NOT IN "
                            "('completed', 'expired', 'cancelled', 'failed') AND meta NOT LIKE '%\"abandoned\"%'")


def recorded_input(path: str | os.PathLike[str]) -> tuple[str | None, str | None] | None:
    """(input_path, input_hash) a store at ``path`` records for its job, or None (no job row, or
    not a readable store).

    A peek, not a :class:`JobStore`: it neither migrates nor writes, so looking at another job's
    store (an older flextier's, or one some other process owns) changes nothing in it.
    """
    try:
        db = sqlite3.connect(str(path))
    except sqlite3.Error:  # pragma: no cover
        return None
    try:
        row = db.execute("SELECT input_path, input_hash FROM job WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return row


_SECRET_KEYS = ("api_key", "apikey", "secret", "token", "password", "authorization")


def _assert_no_secrets(config: dict[str, Any]) -> None:
    """Refuse to persist anything that looks like a credential (a guard against future slips)."""
    for k in config:
        kl = k.lower()
        if any(s in kl for s in _SECRET_KEYS) and not kl.endswith("tokens"):
            raise ValueError(f"refusing to store config key {k!r} in the job store")


__all__ = ["JobStore", "ClaimedItem", "FinishedItem", "ImportReport", "FlushResult", "redact_url",
           "default_store_path", "PENDING", "INFLIGHT", "DONE", "FAILED", "FINAL_STATES", "MIGRATIONS",
           "BATCH_RESERVED", "StoreDamaged", "NoSpace", "store_failure", "SCHEMA_VERSION", "recorded_input"]
