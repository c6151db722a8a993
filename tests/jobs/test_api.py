"""The Python API: run_job / arun_job / astream_job, including chaining one job into the next."""
from __future__ import annotations

import asyncio

import pytest

import flextier
from flextier.errors import UserInputError
from flextier.jobs.api import astream_job, parse_deadline
from flextier.jobs.input import InvalidInput

MODEL = "openai/gpt-5.4-mini"


def test_run_job_sync(emulator):
    emu = emulator("calm", time_scale=2000)
    items = ["What is 2+2?", {"id": "named", "prompt": "Name a colour."},
             {"custom_id": "native", "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": "hi"}]}}]
    res = flextier.run_job(items, model=MODEL, deadline="2h", clock=emu.clock, base_url=emu.openai_base_url,
                           api_key="test", max_tokens=50)
    assert [r.custom_id for r in res] == ["0", "named", "native"]
    assert all(r.ok and r.text and r.tier == "flex" and r.cost > 0 for r in res)
    assert res[0].body["choices"][0]["message"]["content"] == res[0].text


def test_invalid_items_raise_before_sending(emulator):
    emu = emulator("calm", time_scale=2000)
    with pytest.raises(InvalidInput):
        flextier.run_job(["ok", {"id": "x"}], model=MODEL, clock=emu.clock, base_url=emu.openai_base_url,
                         api_key="test")
    assert emu.ledger() == []
    with pytest.raises(UserInputError):
        flextier.run_job(["ok"], model=MODEL, deadline="-1h", clock=emu.clock, base_url=emu.openai_base_url)


async def test_chaining_async_iterables(emulator):
    """Step 2 consumes step 1's results as they complete, while step 1 is still running."""
    emu = emulator("calm", time_scale=2000)
    common = dict(model=MODEL, clock=emu.clock, base_url=emu.openai_base_url, api_key="test", max_tokens=40)
    first_done = asyncio.Event()
    step1_count = 0

    async def topics():  # step 1's own input trickles in, as from an earlier stage
        for i in range(12):
            yield f"Topic {i}"
            await asyncio.sleep(0.05)

    async def step1():
        nonlocal step1_count
        async for r in astream_job(topics(), **common):
            step1_count += 1
            yield {"id": f"summary-of-{r.custom_id}", "prompt": f"Summarise: {r.text[:200]}"}

    seen = []
    async for r in astream_job(step1(), **common, job="step2"):
        if not seen:
            first_done.set()
            early = step1_count  # step 1 had not finished when step 2 produced its first result
        seen.append(r.custom_id)
    assert sorted(seen) == sorted(f"summary-of-{i}" for i in range(12))
    assert early < 12


async def test_arun_job_in_loop_and_run_job_refuses(emulator):
    emu = emulator("calm", time_scale=2000)
    res = await flextier.arun_job(["a", "b"], model=MODEL, clock=emu.clock, base_url=emu.openai_base_url,
                                  api_key="test", max_tokens=20)
    assert len(res) == 2
    with pytest.raises(RuntimeError, match="arun_job"):
        flextier.run_job(["a"], model=MODEL)


def test_parse_deadline_forms():
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert parse_deadline("90m", now) == now + 5400
    assert parse_deadline("1h30m", now) == now + 5400
    assert parse_deadline("09:00", now, utc=True) == now + 3600
    assert parse_deadline("07:00", now, utc=True) == now + 23 * 3600  # the next 07:00
    assert parse_deadline("2027-01-15T10:00", now, utc=True) == now + 7200
    assert parse_deadline(None, now) is None
    for bad in ("2027-01-15T07:00", "yesterday", "0s"):
        with pytest.raises(UserInputError):
            parse_deadline(bad, now, utc=True)
