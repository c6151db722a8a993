"""Resume after ``kill -9`` in the middle of polling: a subprocess drives the lane against the
emulator (running in this test process), is killed with SIGKILL once its batch is submitted,
and a second run reattaches to the open batch: no resubmission, nothing lost or duplicated."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from decimal import Decimal

from flextier.batch.base import BatchHandle
from flextier.jobs.batch_store import JobStoreLane
from flextier.batch.lane import BatchLane
from flextier.emulator.batch_core import batch_engine
from flextier.jobs.store import JobStore

from .conftest import TIME_SCALE, entry, ledger_cost, remote_batch_id, sigkill_when

WORKER = textwrap.dedent("""
    import asyncio, sys, time
    from flextier.batch import get_backend
    from flextier.jobs.batch_store import JobStoreLane
    from flextier.batch.lane import BatchLane
    from flextier.catalog import default_catalog
    from flextier.jobs.store import JobStore

    store_path, base_url, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
    e = default_catalog().resolve("openai/gpt-5.4-mini")
    store = JobStore(store_path, create=False)
    ls = JobStoreLane(store, e)
    items = ls.load_items([r["custom_id"] for r in store.iter_items("pending")])
    lane = BatchLane(get_backend(e, base_url=base_url, api_key="k"), ls, clock=time.time,
                     sleep=lambda s: asyncio.sleep(s / scale), poll_interval=30.0)
    asyncio.run(lane.run(items))
    print("FINISHED", flush=True)
""")


async def test_resume_after_kill9_reattaches_without_resubmitting(emulator, backend_for, job_store, tmp_path):
    emu = emulator(parallelism=0.0002)            # ~1.7 s of wall time for the batch
    e = entry("openai")
    store = job_store(e, 30)
    path = store.path
    store.close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen([sys.executable, str(script), str(path), emu.openai_base_url, str(TIME_SCALE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    sigkill_when(proc, lambda: remote_batch_id(path) is not None, within=40,
                 what="the worker never submitted its batch", settle=0.3)   # let it poll a few times
    emu_batches = [j for j in batch_engine(emu.engine).jobs.values() if j.provider == "openai"]
    assert len(emu_batches) == 1 and not emu_batches[0].terminal

    store = JobStore(path, create=False)
    store.recover()                                  # what a resumed run does first
    assert store.counts()["inflight"] == 30 and not list(store.iter_items("pending"))
    ls = JobStoreLane(store, e)
    lane = BatchLane(backend_for(emu, "openai"), ls, clock=emu.clock.now, sleep=emu.clock.asleep,
                     poll_interval=30.0)
    rep = await lane.run([])
    assert (rep.reattached, rep.submitted, rep.resubmitted, rep.done) == (1, 0, 0, 30)
    assert len([j for j in batch_engine(emu.engine).jobs.values() if j.provider == "openai"]) == 1
    assert store.counts()["done"] == 30
    assert store.db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM ledger").fetchone() == (30, 30)
    spent = sum(Decimal(c) for (c,) in store.db.execute("SELECT cost FROM ledger"))
    assert spent == Decimal(str(ledger_cost(emu.ledger()))).quantize(spent)
    # a second resume finds nothing to do and sends nothing
    again = await BatchLane(backend_for(emu, "openai"), ls, clock=emu.clock.now, sleep=emu.clock.asleep).run([])
    assert (again.reattached, again.submitted, again.done) == (0, 0, 0)


async def test_crash_between_record_and_submit_is_recovered(emu, backend_for, job_store):
    """The batch row exists but its provider id was never saved: the lane finds it by its
    local id (OpenAI metadata) instead of submitting it again."""
    e = entry("openai")
    store = job_store(e, 4)
    ls = JobStoreLane(store, e)
    be = backend_for(emu, "openai")
    items = ls.load_items([r["custom_id"] for r in store.iter_items("pending")])
    ls.batch_intent("fxcrash-00001-abcd", "openai", [i.item_id for i in items], at=emu.clock.now())
    be.submit(items, "fxcrash-00001-abcd")           # ... and the process died before batch_submitted()
    rep = await BatchLane(be, ls, clock=emu.clock.now, sleep=emu.clock.asleep, poll_interval=30.0).run([])
    assert (rep.recovered, rep.resubmitted, rep.submitted, rep.done) == (1, 0, 0, 4)
    assert len([j for j in batch_engine(emu.engine).jobs.values() if j.provider == "openai"]) == 1


def test_abandoned_batch_is_remembered_and_release_never_touches_online_items(job_store):
    """A straggler rescue hands the batch's items back and records, in the same transaction, that
    the batch was abandoned and what it holds: a resume reattaches to it with its original items
    (to collect its late output) but never hands items back twice; an item already taken by the
    online lanes stays in flight."""
    e = entry("openai")
    store = job_store(e, 3)
    ls = JobStoreLane(store, e)
    ids = ["i0", "i1", "i2"]
    ls.batch_intent("fxab-00001-0000", "openai", ids, at=1.0)
    ls.batch_submitted("fxab-00001-0000", BatchHandle("openai", "batch_x", ids, e.name, "fxab-00001-0000"), at=2.0)
    ls.batch_abandoned("fxab-00001-0000", ids, at=3.0)
    assert store.counts()["pending"] == 3 and all(r["in_batch"] is None for r in store.iter_items())
    (ob,) = JobStoreLane(store, e).open_batches()          # what a resumed run sees
    assert ob.abandoned and ob.item_ids == ids and ob.handle is not None and ob.handle.item_ids == ids
    claimed = store.flush(claim=1).claimed                  # the online lanes take i0
    assert [c.custom_id for c in claimed] == ["i0"]
    ls.release(ids, at=4.0)                                 # a second hand-back changes nothing
    assert {r["custom_id"]: r["state"] for r in store.iter_items()} == {"i0": "inflight", "i1": "pending",
                                                                        "i2": "pending"}
    # the abandoned batch holds nothing any more: it does not age a batch submitted after it
    assert store.open_batch_submitted_at() is None
    ls.batch_intent("fxab-00002-0000", "openai", ["i1", "i2"], at=10.0)
    ls.batch_submitted("fxab-00002-0000", BatchHandle("openai", "batch_y", ["i1", "i2"], e.name, "fxab-00002-0000"),
                       at=11.0)
    assert store.open_batch_submitted_at() == 11.0


async def test_abandoned_batch_without_provider_id_is_closed_not_resubmitted(emu, backend_for, job_store):
    """Abandoned before its submission was confirmed (then a crash): the resume never looks for it
    to submit it again; its items already belong to the online lanes."""
    e = entry("openai")
    store = job_store(e, 4)
    ls = JobStoreLane(store, e)
    ids = [f"i{i}" for i in range(4)]
    ls.batch_intent("fxab-00002-0000", "openai", ids, at=emu.clock.now())
    ls.batch_abandoned("fxab-00002-0000", ids, at=emu.clock.now())
    rep = await BatchLane(backend_for(emu, "openai"), ls, clock=emu.clock.now, sleep=emu.clock.asleep).run([])
    assert (rep.reattached, rep.recovered, rep.resubmitted, rep.submitted) == (0, 0, 0, 0)
    assert not batch_engine(emu.engine).jobs and not store.open_batches()
    assert store.counts()["pending"] == 4
