"""How long to wait before the next attempt.

Why this shape: when a provider sheds flex traffic it sheds *everyone's* at the same
moment, so tens of thousands of waiting calls must not come back in lock-step.
Exponential backoff with *full jitter* (a uniform draw in ``[0, min(cap, base*2**n)]``)
spreads them out best for the least total wait. When the provider says how long to
wait (``retry-after-ms``, ``retry-after``, or Gemini's ``google.rpc.RetryInfo``
``retryDelay``), that wins, up to ``retry_after_cap`` so a bogus header cannot park a
call for an hour.

The RNG is injectable so tests (and reproducible runs) get exact delays.
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

__all__ = ["Backoff", "retry_after_from_headers", "retry_delay_from_google_details", "parse_duration"]


@dataclass
class Backoff:
    """Exponential backoff with full jitter.

    ``delay(n)`` for the n-th consecutive failure (0-based) draws uniformly from
    ``[0, min(cap, base * 2**n)]``. A provider-supplied ``retry_after`` replaces the draw,
    clamped to ``[0, retry_after_cap]``.
    """

    base: float = 1.0
    cap: float = 60.0
    retry_after_cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.retry_after_cap < 0:
            raise ValueError("backoff base, cap and retry_after_cap must be >= 0")

    def ceiling(self, failures: int) -> float:
        """The upper bound of the jitter window after ``failures`` (0-based) failures."""
        # 2**n overflows float for huge n; the cap is reached long before 64.
        return min(self.cap, self.base * (2 ** min(max(failures, 0), 64)))

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.retry_after_cap)
        return self.rng.uniform(0.0, self.ceiling(failures))


def retry_after_from_headers(headers: Mapping[str, Any] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date).

    ``headers`` may be any case-insensitive or plain mapping; keys are compared lower-cased.
    Returns None when absent or unparseable.
    """
    if not headers:
        return None
    get = getattr(headers, "get", None)
    ms = sec = None
    if get is not None and not isinstance(headers, dict):
        ms, sec = get("retry-after-ms"), get("retry-after")  # httpx Headers: case-insensitive
    else:
        for k, v in headers.items():
            lk = str(k).lower()
            if lk == "retry-after-ms":
                ms = v
            elif lk == "retry-after":
                sec = v
    if ms is not None:
        try:
            val = float(ms) / 1000.0
            if val >= 0:
                return val
        except (TypeError, ValueError):
            pass
    if sec is not None:
        try:
            val = float(sec)
            return val if val >= 0 else None
        except (TypeError, ValueError):
            try:
                when = parsedate_to_datetime(str(sec)).timestamp()
            except (TypeError, ValueError, IndexError):
                return None
            return max(0.0, when - (time.time() if now is None else now))
    return None


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)s\s*$")


def parse_duration(value: Any) -> float | None:
    """A google.protobuf.Duration as JSON: ``"34s"``, ``"1.5s"`` or ``{"seconds": 34, "nanos": 0}``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        return float(m.group(1)) if m else None
    if isinstance(value, Mapping):
        try:
            return float(value.get("seconds", 0) or 0) + float(value.get("nanos", 0) or 0) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def retry_delay_from_google_details(details: Any) -> float | None:
    """``retryDelay`` from a ``google.rpc.RetryInfo`` entry in a Google error body.

    Accepts the whole body (``{"error": {"details": [...]}}``), the ``error`` object, or the
    ``details`` list.
    """
    if isinstance(details, Mapping):
        if isinstance(details.get("error"), Mapping):
            details = details["error"]
        details = details.get("details")
    if not isinstance(details, list):
        return None
    for d in details:
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = parse_duration(d.get("retryDelay", d.get("retry_delay")))
            if delay is not None and delay >= 0:
                return delay
    return None
