"""Published peak hours of a clock-priced model (DeepSeek): when the peak price applies.

Why in the catalog: a price that depends on the time of the request is still a price, so its
windows are data with a source and a date, beside the prices themselves (models.json). Which
price a request pays is decided in :func:`flextier.cost.clock_tier`; this module only answers
"is ``ts`` inside a peak window" and "when does that change".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import UserInputError

__all__ = ["PeakHours", "parse_peak_hours"]

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_WIN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class PeakHours:
    """Peak windows in UTC minutes of the day ``[start, end)``, on ``days`` (0 = Monday).

    Every other instant is off-peak, priced at the entry's ``offpeak`` tier."""

    windows: tuple[tuple[int, int], ...]
    days: frozenset[int]
    source: str = ""
    source_date: str = ""

    def is_peak(self, ts: float) -> bool:
        dt = datetime.fromtimestamp(ts, tz=timezone.utc)
        if dt.weekday() not in self.days:
            return False
        m = dt.hour * 60 + dt.minute
        return any(a <= m < b for a, b in self.windows)

    def next_change(self, ts: float) -> float:
        """The first instant after ``ts`` at which :meth:`is_peak` flips (within 8 days)."""
        now = self.is_peak(ts)
        dt = datetime.fromtimestamp(ts, tz=timezone.utc)
        day0 = dt.replace(hour=0, minute=0, second=0, microsecond=0)
        edges = []
        for d in range(9):
            day = day0 + timedelta(days=d)
            for a, b in self.windows:
                edges += [(day + timedelta(minutes=a)).timestamp(), (day + timedelta(minutes=b)).timestamp()]
        for e in sorted(edges):
            if e > ts and self.is_peak(e) != now:
                return e
        return ts + 8 * 86400.0

    def describe(self) -> str:
        names = [k.capitalize() for k, v in sorted(_DAYS.items(), key=lambda kv: kv[1]) if v in self.days]
        span = f"{names[0]}-{names[-1]}" if len(names) > 1 else (names[0] if names else "never")
        wins = ", ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in self.windows)
        return f"peak {wins} UTC {span}"

    def as_dict(self) -> dict[str, Any]:
        return {"windows_utc": [f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in self.windows],
                "days": sorted(self.days), "source": self.source, "source_date": self.source_date}


def parse_peak_hours(block: Any, *, where: str, file: str, line: int | None) -> PeakHours:
    """``{"windows_utc": ["01:00-04:00", ...], "days": "Mon-Fri", "source": ..., "source_date": ...}``."""
    if not isinstance(block, dict):
        raise UserInputError("peak_hours must be an object", file=file, line=line, field=where)
    wins = []
    for w in block.get("windows_utc") or []:
        m = _WIN.match(str(w).strip())
        if not m:
            raise UserInputError(f"window {w!r} is not HH:MM-HH:MM", file=file, line=line, field=f"{where}.windows_utc")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        a, b = h1 * 60 + m1, h2 * 60 + m2
        if not (0 <= a < b <= 24 * 60 and m1 < 60 and m2 < 60):
            raise UserInputError(f"window {w!r} must run forward within one day", file=file, line=line,
                                 field=f"{where}.windows_utc")
        wins.append((a, b))
    if not wins:
        raise UserInputError("peak_hours needs at least one window", file=file, line=line, field=f"{where}.windows_utc")
    days_in = str(block.get("days", "Mon-Sun")).strip().lower()
    m = re.fullmatch(r"([a-z]{3})-([a-z]{3})", days_in)
    if m and m.group(1) in _DAYS and m.group(2) in _DAYS:
        days = frozenset(range(_DAYS[m.group(1)], _DAYS[m.group(2)] + 1))
    else:
        try:
            days = frozenset(_DAYS[d.strip()[:3]] for d in days_in.split(","))
        except KeyError:
            raise UserInputError(f"days {block.get('days')!r} is not like Mon-Fri or Mon,Tue", file=file, line=line,
                                 field=f"{where}.days") from None
    return PeakHours(tuple(sorted(wins)), days, str(block.get("source", "")), str(block.get("source_date", "")))
