"""The live display shows how many items sit inside provider batches: the runner's snapshot
carries ``in_batch`` (``Runner.batch.in_batch()``) and the non-TTY progress line prints it
("in batch 20") while the batch is open, and drops it once the batch has delivered."""
from __future__ import annotations

import asyncio
import io

from flextier.jobs.progress import Progress
from flextier.jobs.runner import Runner, RunOptions
from flextier.providers import get_adapter

from .conftest import entry

N = 20


async def test_progress_lines_show_items_in_batch(emulator, backend_for, job_store):
    emu = emulator(parallelism=0.01)               # the batch stays open for about a wall second
    e = entry("openai")
    store = job_store(e, N)
    adapter = get_adapter(e, base_url=emu.openai_base_url, api_key="k")
    runner = Runner(store, adapter, RunOptions(model=e, tier_mode="batch", batch_poll_interval=30.0),
                    clock=emu.clock, batch_backend=backend_for(emu, "openai"))
    runner.prepare()
    assert runner.snapshot().in_batch == 0          # nothing taken for a batch yet
    buf = io.StringIO()
    progress = Progress(runner.snapshot, stream=buf, live=False, interval=0.02)
    seen: list[int] = []

    async def sample() -> None:
        while True:
            seen.append(runner.snapshot().in_batch)
            await asyncio.sleep(0.01)

    progress.start()
    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        await asyncio.wait_for(runner.run(), 60)
    finally:
        sampler.cancel()
        await progress.stop()
    assert store.counts()["done"] == N and store.tier_counts() == {"batch": N}
    assert max(seen) == N and seen[-1] in (0, N) and runner.snapshot().in_batch == 0
    lines = buf.getvalue().splitlines()
    assert any(f"in batch {N}," in ln for ln in lines), lines[:3]
    assert "in batch" not in lines[-1]              # the final line: the batch has delivered
