"""The per-user history of flex attempts, and the time-of-day forecast learned from it.

Why: no provider publishes flex queue times or shed rates by hour, so the only numbers a user can
schedule by are their own (docs/history.md). Every job, wrapped call and gateway call adds one
attempt through :func:`record_attempt` (or a :class:`Recorder`); :func:`load_forecast` turns the
counts into the planner's ``availability`` input and ``flextier when`` into a heat map.
"""
from __future__ import annotations

from .db import EMULATED, HISTORY_ENV, REAL, CellRow, HistoryDB, default_history_path, history_disabled
from .forecast import (MIN_CELLS, MIN_OBS, CellEstimate, Forecast, build_forecast, learned_availability,
                       load_forecast)
from .recorder import (OUTCOMES, Recorder, default_recorder, hour_of_week, outcome_of, record_attempt, record_call,
                       week_of)

__all__ = ["HistoryDB", "CellRow", "Recorder", "record_attempt", "record_call", "default_recorder", "outcome_of", "OUTCOMES",
           "Forecast", "CellEstimate", "load_forecast", "build_forecast", "learned_availability",
           "default_history_path", "history_disabled", "HISTORY_ENV", "REAL", "EMULATED", "MIN_OBS", "MIN_CELLS",
           "hour_of_week", "week_of"]
