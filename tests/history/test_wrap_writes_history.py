"""Wrapped SDK calls add to the per-user history, in the emulated file when the endpoint is loopback."""
from __future__ import annotations

from pathlib import Path

import openai
import pytest

import flextier
from flextier.emulator import serve
from flextier.history import EMULATED, HistoryDB, default_recorder


def _attempts(path: Path, model: str, tier: str = "flex") -> tuple[int, int]:
    with HistoryDB(path, EMULATED) as db:
        rows = list(db.rows("openai", model, tier))
    return sum(r.attempts for r in rows), sum(r.sheds for r in rows)


def test_wrapped_calls_are_recorded_as_emulated_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "h.db"))
    with serve(profile="calm", seed=0, latency_scale=0) as emu:
        c = flextier.wrap(openai.OpenAI(base_url=emu.openai_base_url, api_key="k", max_retries=0))
        for _ in range(3):
            c.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}])
        emu.set_profile("outage", latency_scale=0)      # flex sheds, then standard: every attempt is kept
        pol = flextier.Policy(sleep=lambda s: None, fallback=2)   # two flex tries, then standard
        c2 = flextier.wrap(openai.OpenAI(base_url=emu.openai_base_url, api_key="k", max_retries=0), policy=pol)
        c2.chat.completions.create(model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}])
    default_recorder(True).flush()
    attempts, sheds = _attempts(tmp_path / "h.emulated.db", "openai/gpt-5.4-mini")
    assert attempts >= 4 and sheds >= 1          # 3 served flex, then at least one shed
    assert _attempts(tmp_path / "h.emulated.db", "openai/gpt-5.4-mini", "standard")[0] == 1  # the fallback
    assert not (tmp_path / "h.db").exists()      # a loopback endpoint never adds to the real history
