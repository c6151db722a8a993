"""Callbacks that report each attempt, backoff and fallback, so users can log or meter them.

Why hooks and not logging: a bulk run makes tens of thousands of calls; the retry loop
must stay cheap and must not decide for the user what to log. Hooks are plain
synchronous callables, called inline from the retry loop (keep them fast; hand heavy
work to a queue). An exception raised by a hook is logged once per hook and swallowed:
metering must never break a call.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from .._types import Attempt
from ..errors import ProviderError

log = logging.getLogger("flextier.policy")

__all__ = ["AttemptEvent", "BackoffEvent", "FallbackEvent", "Hooks"]


@dataclass(frozen=True)
class AttemptEvent:
    """One attempt ended (successfully or not)."""

    provider: str
    model: str
    attempt: Attempt
    error: ProviderError | None = None


@dataclass(frozen=True)
class BackoffEvent:
    """The loop is about to sleep ``delay`` seconds before retrying ``tier``."""

    provider: str
    model: str
    tier: str
    delay: float
    reason: str           # the error class name that caused it
    failures: int         # consecutive failures so far on this tier


@dataclass(frozen=True)
class FallbackEvent:
    """The loop switched tiers (normally flex -> standard)."""

    provider: str
    model: str
    from_tier: str
    to_tier: str
    reason: str           # "max_flex_wait" | "attempts" | "deadline" | "tier_not_supported"
    flex_attempts: int
    elapsed_s: float


@dataclass
class Hooks:
    """User callbacks. Any may be None."""

    on_attempt: Optional[Callable[[AttemptEvent], None]] = None
    on_backoff: Optional[Callable[[BackoffEvent], None]] = None
    on_fallback: Optional[Callable[[FallbackEvent], None]] = None
    _failed: set = field(default_factory=set, repr=False, compare=False)

    def emit(self, event: AttemptEvent | BackoffEvent | FallbackEvent) -> None:
        fn = (self.on_attempt if isinstance(event, AttemptEvent)
              else self.on_backoff if isinstance(event, BackoffEvent) else self.on_fallback)
        if fn is None:
            return
        try:
            fn(event)
        except Exception:  # noqa: BLE001 - a metering hook must never break a call
            key = id(fn)
            if key not in self._failed:
                self._failed.add(key)
                log.exception("flextier hook %r raised; ignoring (reported once)", fn)
