"""The job store: import with duplicate detection, batched durable writes, crash recovery."""
from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from flextier.jobs.input import InvalidInput, iter_input
from flextier.jobs.store import FinishedItem, JobStore, redact_url


def _store(tmp_path, name="j"):
    s = JobStore(tmp_path / ".flextier" / f"{name}.db")
    s.create_job(name=name, model="openai/gpt-5.4-mini", tier_mode="auto", created_at=0.0, config={"concurrency": 8})
    return s


def test_schema_and_wal(tmp_path):
    s = _store(tmp_path)
    from flextier.jobs.store import MIGRATIONS

    assert s.migrations() == [(m[0], m[1]) for m in MIGRATIONS]
    assert s.migrations()[:3] == [(1, "initial"), (2, "sends"), (3, "output file identity")]
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    s2 = JobStore(tmp_path / ".flextier" / "j.db")  # reopening does not re-run migrations
    assert s2.job()["config"] == {"concurrency": 8}


def test_import_and_duplicates(tmp_path, write_jsonl):
    s = _store(tmp_path)
    p = write_jsonl([{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"},
                     {"id": 5}])
    with pytest.raises(InvalidInput) as ei:
        s.import_items(iter_input(p), file=str(p), skip_invalid=False)
    assert ei.value.count == 2
    lines = sorted((e.line, e.field) for e in ei.value.errors)
    assert lines == [(3, "id"), (4, "prompt")]
    assert "first on line 1" in ei.value.errors[0].message or "first on line 1" in ei.value.errors[1].message
    assert s.counts()["total"] == 0  # nothing kept, nothing to send
    rep = s.import_items(iter_input(p), file=str(p), skip_invalid=True)
    assert rep.total == 2 and rep.invalid == 2
    assert s.job()["state"] == "ready" and s.job()["skipped_invalid"] == 2


def test_dup_detection_across_chunks(tmp_path, write_jsonl):
    s = _store(tmp_path)
    recs = [{"id": f"i{k}", "prompt": "x"} for k in range(30)] + [{"id": "i3", "prompt": "dup"}]
    p = write_jsonl(recs)
    rep = s.import_items(iter_input(p), file=str(p), skip_invalid=True, chunk=7, commit_every=10)
    assert rep.total == 30 and rep.invalid == 1 and rep.errors[0].line == 31


def _finish(seq, state="done", cost="0.001"):
    return FinishedItem(seq=seq, state=state, result=f'{{"custom_id":"{seq}"}}', tier="flex", attempts=1,
                        served_tier="flex", cost=Decimal(cost), standard_cost=Decimal(cost) * 2,
                        error_class=None, latency=1.0, finished_at=10.0)


def test_claim_finish_and_recover(tmp_path, simple_jobs):
    s = _store(tmp_path)
    p = simple_jobs(10)
    s.import_items(iter_input(p), file=str(p), skip_invalid=False)
    fr = s.flush(claim=4)
    assert [c.seq for c in fr.claimed] == [0, 1, 2, 3]
    assert s.counts()["inflight"] == 4
    sent = {seq: s.open_send(seq, "flex", Decimal("0.004"), 1.0) for seq in (0, 1, 2)}
    s.commit_sends()
    s.finish(_finish(0))
    s.add_ledger(1.0, 0, "flex", Decimal("0.001"), Decimal("0.002"), 10, 5)
    s.add_attempt(0, "flex", "ok", 1.0, 200, None, False, 1.0)
    s.close_send(sent[0])  # answered: cleared in the flush that records the answer
    # nothing is durable until flush: another connection sees the old state
    other = sqlite3.connect(s.path)
    assert other.execute("SELECT state FROM items WHERE seq=0").fetchone()[0] == "inflight"
    fr = s.flush(claim=2)
    assert [f.seq for f in fr.finished] == [0] and fr.gen == 1
    assert [c.seq for c in fr.claimed] == [4, 5]
    assert other.execute("SELECT state, out_gen FROM items WHERE seq=0").fetchone() == ("done", 1)
    other.close()
    s.close()
    # "crash": reopen; in-flight items become pending, done stays done; only the items whose
    # send was out (1, 2) are possibly billed, not those claimed and never sent (3, 4, 5)
    s = JobStore(s.path)
    assert s.recover() == 5 and s.recovered_sends == 2
    c = s.counts()
    assert c == {"pending": 9, "inflight": 0, "done": 1, "failed": 0, "total": 10}
    n, bound = s.possibly_billed()
    assert n == 2 and bound == Decimal("0.008")  # at their reserved cost
    claimed = s.flush(claim=100).claimed
    assert 0 not in [x.seq for x in claimed] and len(claimed) == 9
    assert {x.seq: x.possibly_billed for x in claimed if x.possibly_billed} == {1: 1, 2: 1}
    assert [(r[1], r[4]) for r in s.send_records()] == [(1, "unknown"), (2, "unknown")]
    t = s.ledger_totals()
    assert t["spent"] == Decimal("0.001") and t["standard"] == Decimal("0.002")
    assert list(s.results_after_gen(0)) == [(0, '{"custom_id":"0"}')]


def test_send_records_count_real_sends_per_item(tmp_path, simple_jobs):
    """Issue 18 §4: each send is recorded before it leaves; an answer clears it, a timeout keeps it
    as possibly billed at once (durably, not in memory until the item finishes), and a crash
    turns the sends still out into possibly billed ones. An item sent five times and answered
    once, with a kill in between, is flagged four times."""
    s = _store(tmp_path)
    p = simple_jobs(3)
    s.import_items(iter_input(p), file=str(p), skip_invalid=False)
    s.flush(claim=3)
    ids = [s.open_send(0, "flex", Decimal("0.01"), float(t)) for t in range(3)]
    assert not s.send_committed(ids[0])
    other = sqlite3.connect(s.path)
    assert other.execute("SELECT COUNT(*) FROM sends").fetchone()[0] == 0
    s.commit_sends()                 # one transaction for the three (a dispatch round)
    assert all(s.send_committed(i) for i in ids)
    assert other.execute("SELECT COUNT(*) FROM sends").fetchone()[0] == 3
    s.lose_send(ids[0])              # timeout
    s.lose_send(ids[1])              # connection reset
    s.close_send(ids[2])             # a shed 429: refused, not billed
    s.flush()
    assert other.execute("SELECT possibly_billed FROM items WHERE seq = 0").fetchone()[0] == 2
    s.open_send(0, "flex", Decimal("0.01"), 4.0)
    s.open_send(0, "standard", Decimal("0.02"), 4.0)   # hedged
    s.commit_sends()
    other.close()
    s.close()                        # kill: two sends out, outcome never learnt
    s = JobStore(s.path)
    s.recover()
    assert s.recovered_sends == 2
    assert {r["seq"]: r["possibly_billed"] for r in s.iter_items()} == {0: 4, 1: 0, 2: 0}
    assert s.possibly_billed() == (4, Decimal("0.05"))
    s.finish(_finish(0))             # finally answered: the flag count is not overwritten
    s.flush()
    assert next(s.iter_items("done"))["possibly_billed"] == 4


def test_release_and_batches(tmp_path, simple_jobs):
    s = _store(tmp_path)
    p = simple_jobs(6)
    s.import_items(iter_input(p), file=str(p), skip_invalid=False)
    s.flush(claim=3)
    s.release([0], possibly_billed=[1])
    rows = {r["seq"]: (r["state"], r["possibly_billed"]) for r in s.iter_items()}
    assert rows[0] == ("pending", 0) and rows[1] == ("pending", 1) and rows[2] == ("inflight", 0)
    s.create_batch("b1", "openai", [3, 4], created_at=1.0)
    assert s.recover() == 1  # seq 2; the batch items are reattached, not resent
    assert [i.seq for i in s.batch_items("b1")] == [3, 4]
    assert s.open_batches()[0]["id"] == "b1"
    s.leave_batch([4])
    assert s.counts()["pending"] == 5


def test_no_secrets_in_config(tmp_path):
    s = JobStore(tmp_path / "x.db")
    with pytest.raises(ValueError):
        s.create_job(name="x", model="m", tier_mode="auto", created_at=0, config={"api_key": "sk-123"})
    assert redact_url("https://user:sk-secret@host:8443/v1?key=abc#x") == "https://host:8443/v1"


def test_migration_2_keeps_the_in_flight_items_of_an_older_store(tmp_path, simple_jobs):
    """A store written by a flextier without send records, which crashed with items in flight: the
    upgrade records one open send per such item, so the resume flags them as that version would."""
    s = _store(tmp_path)
    p = simple_jobs(5)
    s.import_items(iter_input(p), file=str(p), skip_invalid=False)
    s.db.execute("UPDATE items SET state = 'inflight', tier = 'standard' WHERE seq IN (1, 3)")
    s.db.execute("DROP TABLE sends")                        # what an older flextier left behind
    s.db.execute("DELETE FROM schema_migrations WHERE id = 2")
    s.close()
    s = JobStore(tmp_path / ".flextier" / "j.db")
    assert (2, "sends") in s.migrations()
    assert [(seq, tier, state) for _, seq, tier, _, state in s.send_records()] == [(1, "standard", "open"),
                                                                                  (3, "standard", "open")]
    assert s.recover() == 2 and s.possibly_billed()[0] == 2
