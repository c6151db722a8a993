"""The lane driver against the emulator with the real job store: per-line retries, salvage of
expired batches, straggler rescue before a deadline, a Claude job choosing batch, and the
client ledger matching the emulator's bill."""
from __future__ import annotations

import asyncio

import pytest
from decimal import Decimal

from flextier.batch import ItemResult
from flextier.jobs.batch_store import JobStoreLane
from flextier.batch.lane import BatchLane
from flextier.cost import price_usage
from flextier.jobs.store import JobStore
from flextier.policy.planner import Observation, Planner, PlannerConfig
from flextier.providers import get_adapter

from .conftest import entry, ledger_cost, set_batch_knobs


def store_cost(store: JobStore, kinds: tuple[str, ...] = ("billed", "duplicate")) -> Decimal:
    q = f"SELECT cost FROM ledger WHERE kind IN ({','.join('?' * len(kinds))})"
    return sum((Decimal(c) for (c,) in store.db.execute(q, kinds) if c is not None), Decimal(0))


def pending_items(lane_store: JobStoreLane, store: JobStore):
    ids = [r["custom_id"] for r in store.iter_items("pending")]
    return lane_store.load_items(ids)


def lane_for(emu, backend, lane_store, **kw) -> BatchLane:
    return BatchLane(backend, lane_store, clock=emu.clock.now, sleep=emu.clock.asleep, poll_interval=30.0, **kw)


def online(emu, e, tier: str):
    """A per-line sender through the client core (the runner's online path), as ``retry_one``."""
    adapter = get_adapter(e, base_url=emu.openai_base_url if e.provider == "openai" else emu.url, api_key="k")
    adapter.transport.aio()       # create the async SDK client now, not in the middle of a deadline

    async def send(item, failed: ItemResult) -> ItemResult:
        oc = await adapter.asend(item.request, tier, 120.0)
        return ItemResult(item_id=item.item_id, ok=True, body=oc.body, usage=oc.usage, tier=oc.served_tier,
                          text=oc.text)
    return send


async def test_lane_runs_a_job_and_retries_failed_lines_one_by_one(emu, backend_for, job_store):
    set_batch_knobs(emu, fail_keys="i3,i7")
    e = entry("openai")
    store = job_store(e, 20)
    ls = JobStoreLane(store, e)
    lane = lane_for(emu, backend_for(emu, "openai"), ls, retry_one=online(emu, e, "flex"))
    rep = await lane.run(pending_items(ls, store))
    assert (rep.submitted, rep.done, rep.retried, rep.failed, rep.duplicates) == (1, 20, 2, 0, 0)
    assert store.counts()["done"] == 20
    assert store.tier_counts() == {"batch": 18, "flex": 2}
    assert not store.open_batches()
    # one provider batch, never resubmitted; the two failed lines went online one by one
    assert sum(1 for r in emu.ledger() if r["requested_tier"] == "flex") == 2
    assert store_cost(store) == Decimal(str(ledger_cost(emu.ledger()))).quantize(store_cost(store))
    saved = store.ledger_totals()
    assert saved["spent"] * 2 == saved["standard"]


async def test_expired_batch_is_salvaged_and_the_rest_handed_back(emulator, backend_for, job_store):
    emu = emulator(stall_at=0.5, window_s=1800)
    e = entry("anthropic")
    store = job_store(e, 10)
    ls = JobStoreLane(store, e)
    handed: list[str] = []
    lane = lane_for(emu, backend_for(emu, "anthropic"), ls, on_leftovers=handed.extend)
    rep = await lane.run(pending_items(ls, store))
    assert rep.done == 5 and len(rep.leftovers) == 5 and sorted(handed) == sorted(rep.leftovers)
    assert list(rep.batches.values()) == ["expired"]
    c = store.counts()
    assert c["done"] == 5 and c["pending"] == 5          # back to the online lanes, out of the batch
    assert all(r["in_batch"] is None for r in store.iter_items("pending"))
    assert store_cost(store) == Decimal(str(ledger_cost(emu.ledger()))).quantize(store_cost(store))


async def test_straggler_rescue_meets_the_deadline(emulator, backend_for, job_store):
    # a slow batch (a sliver of capacity): half done when the deadline comes near
    emu = emulator(parallelism=0.00005)
    e = entry("anthropic")                         # Claude: no flex, so batch is its only discount
    n = 20
    store = job_store(e, n)
    ls = JobStoreLane(store, e)
    send = online(emu, e, "standard")
    t0 = emu.clock.now()
    deadline = t0 + 3 * 3600
    # margin: wall-clock HTTP time is large in emulated seconds at this time scale
    planner = Planner(PlannerConfig(t0=t0, total=n, deadline=deadline, tier_mode="auto", standard_rate=1.0,
                                    margin=3600.0, model_has_flex=False, model_has_batch=True))
    assert planner.decide(Observation(now=t0, done=0, pending=n)).use_batch
    tasks: list[asyncio.Task] = []

    def rescue(view) -> bool:
        c = store.counts()
        d = planner.decide(Observation(now=view.now, done=c["done"] + c["failed"], pending=c["pending"],
                                       in_batch=view.open_items, batch_submitted_at=view.submitted_at))
        return d.batch_rescue != "none"

    async def one(item) -> None:
        res = await send(item, ItemResult.failure(item.item_id, "cancelled", "rescued"))
        cost = price_usage(res.usage, e, res.tier)
        if ls.record_result(res, cost=cost, at=emu.clock.now(), source="retry:standard") == "taken":
            ls.record_duplicate(res, cost=cost, at=emu.clock.now())

    async def run_online(ids: list[str]) -> None:        # what the runner does with handed-back items
        await asyncio.gather(*(one(item) for item in ls.load_items(ids)))
        ls.commit()

    lane = lane_for(emu, backend_for(emu, "anthropic"), ls, should_abandon=rescue,
                    on_leftovers=lambda ids: tasks.append(asyncio.ensure_future(run_online(ids))))
    rep = await lane.run(pending_items(ls, store))
    await asyncio.gather(*tasks)
    assert rep.abandoned and list(rep.batches.values()) == ["cancelled"]
    assert store.counts()["done"] == n
    finished = [r["finished_at"] for r in store.iter_items("done")]
    assert max(finished) <= deadline
    # each item counted once; a batch answer that lost to its standard copy is a billed duplicate
    billed_rows = store.db.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'billed'").fetchone()[0]
    assert billed_rows == n
    emu_billed = [r for r in emu.ledger() if r["served_tier"]]
    dup_rows = store.db.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'duplicate'").fetchone()[0]
    assert len(emu_billed) == n + dup_rows
    assert store_cost(store) == Decimal(str(ledger_cost(emu.ledger()))).quantize(store_cost(store))


async def test_claude_job_chooses_batch_at_half_price(emu, backend_for, job_store):
    e = entry("anthropic/claude-sonnet-4-6")
    assert not e.supports_flex and e.supports_batch
    now = emu.clock.now()
    planner = Planner(PlannerConfig(t0=now, total=30, deadline=now + 30 * 3600, tier_mode="auto",
                                    model_has_flex=e.supports_flex, model_has_batch=e.supports_batch))
    decision = planner.decide(Observation(now=now, done=0, pending=30))
    assert decision.use_batch and decision.mode == "batch"
    store = job_store(e, 30)
    ls = JobStoreLane(store, e)
    rep = await lane_for(emu, backend_for(emu, e.name), ls).run(pending_items(ls, store))
    assert rep.done == 30 and store.tier_counts() == {"batch": 30}
    t = store.ledger_totals()
    assert t["spent"] > 0 and t["spent"] * 2 == t["standard"]
    assert {r["served_tier"] for r in emu.ledger()} == {"batch"}


async def test_bedrock_chunks_below_the_minimum_stay_online(emu, backend_for, job_store):
    e = entry("bedrock")
    store = job_store(e, 3)
    ls = JobStoreLane(store, e)
    rep = await lane_for(emu, backend_for(emu, "bedrock", min_items=100), ls).run(pending_items(ls, store))
    assert rep.submitted == 0 and len(rep.leftovers) == 3 and store.counts()["pending"] == 3


@pytest.mark.parametrize("status,attempts", [
    (400, 1), (403, 1),                # refused: BadRequest, Unauthorized -> the table's FAIL
    (409, 3), (503, 3),                # conflict, unavailable: retried, looked up first
])
async def test_submission_refusal_is_the_adapters_classification(emulator, backend_for, job_store, caplog,
                                                                  status, attempts):
    """The lane asks the backend's adapter to classify a failed submission and the decision table
    whether that is a refusal; it reads no SDK exception or status itself. A Bedrock 409
    ConflictException is retried (the lane then looks the batch up), as OpenAI's 409 always was."""
    emu = emulator(submit_error=status)
    e = entry("bedrock")
    store = job_store(e, 4)
    ls = JobStoreLane(store, e)
    lane = lane_for(emu, backend_for(emu, "bedrock", min_items=1), ls, max_submit_attempts=3)
    with caplog.at_level("WARNING", logger="flextier.batch"):
        rep = await lane.run(pending_items(ls, store))
    assert rep.submitted == 0 and len(rep.leftovers) == 4
    tries = [r for r in caplog.records if "will look for it and retry" in r.getMessage()]
    gave_up = [r for r in caplog.records if "was not accepted" in r.getMessage()]
    assert len(tries) == attempts - 1 and len(gave_up) == 1
    assert store.counts()["pending"] == 4 and not store.open_batches()
