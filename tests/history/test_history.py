"""The per-user history: what one attempt adds, where it lives, and that emulated and real never mix."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flextier.errors import FlexCapacityUnavailable, Timeout, UserInputError
from flextier.history import (EMULATED, REAL, HistoryDB, Recorder, default_history_path, hour_of_week,
                              load_forecast, outcome_of)
from flextier.history.schema import SCHEMA_VERSION

T = 1795503600.0   # Tue 2026-11-24 07:00 UTC


def test_record_attempt_adds_counts_to_its_hour(tmp_path: Path) -> None:
    p = tmp_path / "h.db"
    rec = Recorder(str(p), flush_every=1e9)
    for i in range(10):
        rec.record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex", outcome="ok", ts=T + i * 10,
                           latency=12.0, output_tokens=50)
    rec.record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex", outcome="shed", ts=T + 100)
    rec.record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex", outcome="timeout", ts=T + 4000)
    assert rec.flush() == 2
    with HistoryDB(p) as db:
        assert db.schema_version() == SCHEMA_VERSION
        rows = {r.how: r for r in db.rows("openai", "openai/gpt-5.4-mini")}
    r = rows[hour_of_week(T)]
    assert hour_of_week(T) == 24 + 7                       # Tuesday 07:00
    assert (r.attempts, r.ok, r.sheds, r.out_tokens, r.active_s) == (11, 10, 1, 500, 100.0)
    assert r.hist[4] == 10                                 # 12 s falls in the (10, 20] bucket
    assert rows[hour_of_week(T + 4000)].timeouts == 1      # next hour; a gap over 180 s adds no activity
    assert rows[hour_of_week(T + 4000)].active_s == 0
    # only counts: no column can hold a prompt, an output or a key
    cols = [c[1] for c in sqlite3.connect(p).execute("PRAGMA table_info(cells)")]
    assert set(cols) - {"provider", "model", "tier"} == {c for c in cols if c not in ("provider", "model", "tier")}
    types = {c[1]: c[2] for c in sqlite3.connect(p).execute("PRAGMA table_info(cells)")}
    assert [c for c, t in types.items() if t == "TEXT"] == ["provider", "model", "tier"]


def test_outcomes_of_errors() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(FlexCapacityUnavailable("x"), 0.2) == "shed"
    assert outcome_of(FlexCapacityUnavailable("x"), 900.0) == "timeout"   # sat in the queue, then refused
    assert outcome_of(Timeout("x")) == "timeout"
    assert outcome_of(ValueError("x")) == "error"


def test_emulated_and_real_never_mix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "mine.db"))
    real, emu = default_history_path(REAL), default_history_path(EMULATED)
    assert real == tmp_path / "mine.db" and emu == tmp_path / "mine.emulated.db"
    Recorder(emulated=True).record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex",
                                           outcome="ok", ts=T, latency=1.0)
    r = Recorder(emulated=True)
    r.record_attempt(provider="openai", model="openai/gpt-5.4-mini", tier="flex", outcome="ok", ts=T, latency=1.0)
    r.flush()
    assert emu.exists() and not real.exists()
    assert load_forecast("openai", "openai/gpt-5.4-mini", T).total_attempts == 0         # real: nothing
    assert load_forecast("openai", "openai/gpt-5.4-mini", T, emulated=True).total_attempts == 1
    with pytest.raises(UserInputError, match="emulated history, not real"):
        HistoryDB(emu, REAL)                                # a file keeps its domain


def test_history_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", "off")
    r = Recorder()
    r.record_attempt(provider="openai", model="m", tier="flex", outcome="ok", ts=T)
    assert r.flush() == 0 and r.disabled


def test_unwritable_history_never_fails_the_caller(tmp_path: Path) -> None:
    bad = tmp_path / "f"
    bad.write_text("not a database " * 100)
    r = Recorder(str(bad / "h.db"))          # a path under a file: cannot be created
    r.record_attempt(provider="openai", model="m", tier="flex", outcome="ok", ts=T)
    assert r.flush() == 0
