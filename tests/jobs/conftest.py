"""Fixtures for the runner tests: job files and stores in a temp dir."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write records (dicts, or raw str/bytes lines) to a JSONL file and return its path."""

    def _write(records: list[Any], name: str = "jobs.jsonl") -> Path:
        p = tmp_path / name
        with open(p, "wb") as f:
            for r in records:
                if isinstance(r, bytes):
                    f.write(r + b"\n")
                elif isinstance(r, str):
                    f.write(r.encode("utf-8") + b"\n")
                else:
                    f.write(json.dumps(r).encode("utf-8") + b"\n")
        return p

    return _write


@pytest.fixture
def simple_jobs(write_jsonl: Callable[..., Path]) -> Callable[[int], Path]:
    """A JSONL file of n simple prompt lines."""

    def _make(n: int, name: str = "jobs.jsonl") -> Path:
        return write_jsonl([{"id": f"q{i}", "prompt": f"Say something short about the number {i}."}
                            for i in range(n)], name)

    return _make


# -- emulator-backed helpers -------------------------------------------------------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
from decimal import Decimal  # noqa: E402

from flextier.catalog import default_catalog  # noqa: E402
from flextier.jobs.input import item_from_object  # noqa: E402
from flextier.jobs.runner import OutputSink, Runner, RunOptions  # noqa: E402
from flextier.jobs.store import JobStore  # noqa: E402

MODEL = "openai/gpt-5.4-mini"
START = "2026-11-24T14:00"


@pytest.fixture
def emulator():
    """Start emulators (``emulator(profile, time_scale=..., **knobs)``); all stop at test end."""
    from flextier.emulator import serve

    with contextlib.ExitStack() as stack:
        def start(profile: str = "calm", time_scale: float = 1000, **knobs: Any):
            return stack.enter_context(serve(profile=profile, time_scale=time_scale, start=START, seed=1, **knobs))
        yield start


@pytest.fixture
def make_store(tmp_path: Path):
    """A store with ``n`` simple items (or the given records) imported."""

    def _make(n_or_records: Any = 20, *, name: str = "job", model: str = MODEL) -> JobStore:
        st = JobStore(tmp_path / ".flextier" / f"{name}.db")
        st.create_job(name=name, model=model, tier_mode="auto", created_at=0.0, config={})
        recs = ([{"id": f"q{i}", "prompt": f"Tell me one fact about the number {i}."} for i in range(n_or_records)]
                if isinstance(n_or_records, int) else n_or_records)
        st.import_items((item_from_object(r, i) for i, r in enumerate(recs)), file="<test>", skip_invalid=False)
        return st

    return _make


def _billed(emu) -> tuple[Decimal, int]:
    """What the emulator billed: total cost and number of billed rows."""
    rows = [r for r in emu.ledger() if r.get("cost") not in (None, "0")]
    return sum((Decimal(r["cost"]) for r in rows), Decimal(0)), len(rows)


def _reconciles(emu, store: JobStore) -> bool:
    """The client's ledger (results + duplicates) equals the emulator's bill, except for sends cut off
    mid-flight (a hedge loser cancelled, a reset), which the client marks "possibly billed": the
    emulator may bill those, and they stay within their recorded bound."""
    emu_cost, _ = _billed(emu)
    client = store.ledger_totals()["billed_total"]
    _, bound = store.possibly_billed()
    return client <= emu_cost <= client + bound


@pytest.fixture
def reconciles():
    """``reconciles(emu, store)`` -> True when the two ledgers agree (see :func:`_reconciles`)."""
    return _reconciles


@pytest.fixture
def billed():
    """``billed(emu)`` -> (total cost, billed rows) from the emulator's own ledger."""
    return _billed


@pytest.fixture
def run_emulated(tmp_path: Path):
    """Run a store's job against an emulator on the emulator's clock; returns (stats, runner).

    The planner's ``margin`` defaults to half a wall second of emulated time (at least the
    runner's 60 s): at time scale 2000 one scheduler hiccup of a loaded CI box is many
    emulated minutes, which no real deployment would see. Tests may still pass ``margin``.
    """
    from flextier.providers import get_adapter

    def _run(emu, store: JobStore, *, deadline_s: float | None = None, out: str | None = "out.jsonl",
             model: str = MODEL, **opts: Any):
        entry = default_catalog().resolve(model)
        adapter = get_adapter(entry, base_url=emu.base_urls()[entry.provider], api_key="test")
        now = emu.clock.now()
        ro = RunOptions(model=entry, deadline=None if deadline_s is None else now + deadline_s,
                        **{"concurrency": 32, "params": {"max_tokens": 300},
                           "margin": max(60.0, 0.5 * emu.clock.time_scale), **opts})
        sink = OutputSink(tmp_path / out) if out else None
        runner = Runner(store, adapter, ro, clock=emu.clock, output=sink)
        runner.prepare()
        try:
            stats = asyncio.run(runner.run())
        finally:
            if sink:
                sink.close()
        return stats, runner

    return _run
