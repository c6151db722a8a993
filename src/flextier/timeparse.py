"""Durations and deadlines as users type them: ``90s``, ``45m``, ``3h``, ``1h30m``, ``2d``,
a clock time ``15:30`` (its next occurrence), or an ISO date-time ``2026-11-28T06:00``.

Shared by ``flextier run`` and ``flextier advise`` so both read a deadline the same way.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from .errors import UserInputError

_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DUR = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([smhdw]))+\s*$", re.I)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.I)


def parse_duration(text: str, *, field: str = "--deadline") -> float:
    """Seconds in ``text`` such as ``3h``, ``1h30m``, ``90s``, ``2d``; UserInputError otherwise."""
    if text is None or not _DUR.match(str(text)):
        raise UserInputError(f"{text!r} is not a duration (examples: 90s, 45m, 3h, 1h30m, 2d)", field=field)
    total = sum(float(n) * _UNIT[u.lower()] for n, u in _PART.findall(text))
    if total <= 0:
        raise UserInputError(f"{text!r} must be longer than zero", field=field)
    return total


def parse_deadline(text: str, now: datetime, *, field: str = "--deadline") -> datetime:
    """An absolute deadline from a duration, a clock time or an ISO date-time.

    A clock time without a date (``06:00``) means its next occurrence after ``now``.
    An explicit date-time that is already past is an error: the job could only fail.
    """
    s = (text or "").strip()
    if _DUR.match(s):
        return now + timedelta(seconds=parse_duration(s, field=field))
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", s)
    if m:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            raise UserInputError(f"{text!r} is not a clock time", field=field)
        cand = now.replace(hour=h, minute=mi, second=0, microsecond=0)
        if cand <= now:
            cand += timedelta(days=1)
        return cand
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise UserInputError(f"{text!r} is not a deadline (a duration like 3h, a clock time like 06:00, "
                             "or a date-time like 2026-11-28T06:00)", field=field) from None
    if dt.tzinfo is None and now.tzinfo is not None:
        dt = dt.replace(tzinfo=now.tzinfo)
    elif dt.tzinfo is not None and now.tzinfo is None:
        dt = dt.astimezone().replace(tzinfo=None)
    if dt <= now:
        raise UserInputError(f"deadline {text!r} is already past", field=field)
    return dt
