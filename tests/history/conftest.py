"""Fixtures for the history tests: a seeded emulated week, written once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from flextier.emulator.clock import parse_start
from flextier.emulator.profiles import build_knobs

START = "2026-11-24T14:00"          # a Tuesday
KNOBS = {"slots": 32, "latency_scale": 20.0}


@pytest.fixture(scope="session")
def weekday_knobs():
    return build_knobs("weekday", KNOBS)


@pytest.fixture(scope="session")
def seeded_week(tmp_path_factory, weekday_knobs) -> Path:
    """One emulated week of flex attempts (the week before START), in an emulated history file."""
    from flextier.history import Recorder
    from flextier.emulator.history_synth import synthesise_weeks, week_start

    path = tmp_path_factory.mktemp("hist") / "history.emulated.db"
    rec = Recorder(str(path), emulated=True, flush_every=1e9)
    synthesise_weeks(rec, weekday_knobs, first_week=week_start(parse_start(START)) - 7 * 86400, weeks=1, seed=7,
                     concurrency=32, window_s=300.0, step=3.0)
    return path
