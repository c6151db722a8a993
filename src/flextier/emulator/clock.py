"""Emulated time that runs ``time_scale`` times faster than the wall clock.

The emulator's queue waits, service times and the daily load curve all live in
*emulated* seconds, and clients (backoff sleeps, deadlines) must use the same
clock, or a ``--time-scale 600`` rehearsal of a 3 h deadline would still take 3 h.
One :class:`ScaledClock` instance is shared by the server thread and the client
code in-process; other processes sync through ``GET /_emulator/clock``.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

__all__ = ["ScaledClock", "parse_start", "remote_clock"]


def parse_start(start: str | float | int | datetime | None) -> float:
    """Emulated start instant as POSIX seconds.

    Accepts an ISO string (``2026-11-24T15:00``; naive means UTC), a datetime, an
    epoch number, or None for "now".
    """
    if start is None:
        return time.time()
    if isinstance(start, bool):
        raise ValueError(f"invalid start {start!r}")
    if isinstance(start, (int, float)):
        return float(start)
    if isinstance(start, datetime):
        dt = start
    elif isinstance(start, str):
        text = start.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"invalid start {start!r}: expected ISO time like 2026-11-24T15:00") from None
    else:
        raise ValueError(f"invalid start {start!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


class ScaledClock:
    """A monotonic clock running ``time_scale`` emulated seconds per wall second.

    ``now()`` is emulated POSIX seconds; ``sleep``/``asleep`` take emulated seconds
    and block for ``seconds / time_scale`` of wall time. Thread-safe (read-only
    after construction).
    """

    def __init__(self, time_scale: float = 1.0, start: str | float | datetime | None = None) -> None:
        if not (isinstance(time_scale, (int, float)) and time_scale > 0):
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self.start = parse_start(start)
        self._mono0 = time.monotonic()

    def now(self) -> float:
        """Emulated POSIX seconds."""
        return self.start + (time.monotonic() - self._mono0) * self.time_scale

    def elapsed(self) -> float:
        """Emulated seconds since the clock started."""
        return (time.monotonic() - self._mono0) * self.time_scale

    def wall(self, emulated_seconds: float) -> float:
        """Wall seconds that ``emulated_seconds`` take."""
        return max(0.0, emulated_seconds) / self.time_scale

    def sleep(self, emulated_seconds: float) -> None:
        """Block for ``emulated_seconds`` of emulated time."""
        if emulated_seconds > 0:
            time.sleep(emulated_seconds / self.time_scale)

    async def asleep(self, emulated_seconds: float) -> None:
        """Await ``emulated_seconds`` of emulated time."""
        if emulated_seconds > 0:
            await asyncio.sleep(emulated_seconds / self.time_scale)
        else:
            await asyncio.sleep(0)

    def isoformat(self) -> str:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc).isoformat(timespec="seconds")

    def __repr__(self) -> str:
        return f"ScaledClock(time_scale={self.time_scale}, now={self.isoformat()})"


def loopback_emulator_clock(base_url: str) -> "ScaledClock | None":
    """The emulator's clock when ``base_url`` is a flextier emulator on this machine, else None
    (the wall clock is used): ``flextier run --base-url`` and ``--ray`` rehearse on emulated time."""
    from .._loopback import is_loopback_url

    return remote_clock(base_url) if is_loopback_url(base_url) else None


def remote_clock(base_url: str) -> "ScaledClock | None":
    """The clock of the flextier emulator at ``base_url`` (on this machine), for another process.

    The emulator publishes ``GET /_emulator/clock``; a local :class:`ScaledClock` started at
    the same instant and scale keeps deadlines and backoff in emulated time (``flextier run
    --base-url``, and every Ray worker of a rehearsed job). Anything else (a real provider, a
    proxy) answers differently: None. The caller checks that ``base_url`` is loopback.
    """
    # the standard library, not httpx: on the Bedrock path nothing else needs httpx, and its
    # import (with httpcore's) is a noticeable share of a short job's start-up
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        conn = conn_cls(parts.hostname, parts.port, timeout=2.0)
        try:
            conn.request("GET", "/_emulator/clock")
            r = conn.getresponse()
            if r.status != 200:
                return None
            data = json.loads(r.read())
        finally:
            conn.close()
        now, scale = float(data["now"]), float(data["time_scale"])
    except Exception:
        return None
    return ScaledClock(scale, now)
