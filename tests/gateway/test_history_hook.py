"""Gateway calls add to the per-user history: native routes through the intercept engine, routed
``provider/model`` calls through the gateway itself; an emulator upstream keeps them emulated."""
from __future__ import annotations

from pathlib import Path

import openai
import pytest

from flextier.history import EMULATED, HistoryDB, default_recorder

MSG = [{"role": "user", "content": "Tell me something."}]


def _attempts(path: Path, provider: str, model: str) -> int:
    with HistoryDB(path, EMULATED) as db:
        return sum(r.attempts for r in db.rows(provider, model))


def test_native_and_routed_calls_are_recorded(gateway, emu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXTIER_HISTORY", str(tmp_path / "h.db"))
    gw = gateway()
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-caller", max_retries=0)
    for _ in range(2):
        c.chat.completions.create(model="gpt-5.4", messages=MSG)                 # native: the engine records
    c.chat.completions.create(model="gemini/gemini-3-flash", messages=MSG)       # routed: the gateway records
    default_recorder(True).flush()
    emu_db = tmp_path / "h.emulated.db"
    assert _attempts(emu_db, "openai", "openai/gpt-5.4") == 2                     # once each, not twice
    assert _attempts(emu_db, "gemini", "gemini/gemini-3-flash-preview") == 1     # its catalog name
    assert not (tmp_path / "h.db").exists()
