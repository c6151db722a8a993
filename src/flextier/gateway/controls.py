"""Per-request control headers -> the :class:`~flextier.policy.fallback.Policy` of one call.

``x-flextier-tier: auto|flex|standard``
    ``auto`` (default): flex first, standard when the deadline or ``max-wait`` says so (the
    ``wrap`` policy); ``flex``: flex only, never standard; ``standard``: standard at once.
``x-flextier-deadline: 30m`` or an RFC 3339 time
    the call must be done by then; flex is left for standard while a standard call still fits.
``x-flextier-max-wait: 5m``
    at most this long on flex (attempts and backoff) before standard.

Without them the key's defaults apply (``gateway.toml``), then the gateway's. A header can only
choose among what the key allows: a tier outside the key's ``tiers`` is refused (and a key
without ``standard`` never falls back), so a client cannot raise its own limits. A bad value is
a 400 naming the header; nothing is sent. See README "Gateway".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from ..errors import UserInputError
from ..policy.fallback import Policy
from ..timeparse import parse_deadline, parse_duration
from .config import GatewayConfig, KeyConfig

__all__ = ["Controls", "read_controls", "H_TIER", "H_DEADLINE", "H_MAX_WAIT", "CONTROL_HEADERS"]

H_TIER = "x-flextier-tier"
H_DEADLINE = "x-flextier-deadline"
H_MAX_WAIT = "x-flextier-max-wait"
CONTROL_HEADERS = (H_TIER, H_DEADLINE, H_MAX_WAIT)


@dataclass(frozen=True)
class Controls:
    """What one call asked for, after the key's limits."""

    tier: str                   # auto | flex | standard | priority (as requested; the ledger's requested_tier)
    deadline: float | None      # seconds from now
    max_wait: float | None

    def policy(self, base: Policy, *, allow_standard: bool) -> Policy:
        first = "flex" if self.tier in ("auto", "flex") else self.tier
        changes: dict[str, Any] = {"tier": first}
        if self.tier == "flex" or not allow_standard:
            changes["fallback"] = "never"
        if self.deadline is not None:
            changes["deadline"] = self.deadline
            # a deadline shorter than the standard budget: leave flex at once, not never
            changes["standard_latency_budget"] = min(base.standard_latency_budget, max(self.deadline / 2, 0.001))
        if self.max_wait is not None:
            changes["max_flex_wait"] = self.max_wait
        return base.replace(**changes)


def _deadline_seconds(text: str, now: Callable[[], datetime]) -> float:
    n = now()
    dt = parse_deadline(text, n, field=H_DEADLINE)
    return max(0.001, (dt - n).total_seconds())


def read_controls(headers: Mapping[str, str], key: KeyConfig | None, cfg: GatewayConfig,
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Controls:
    """The call's controls; :class:`UserInputError` (field = the header) for a bad or forbidden value."""
    tier = headers.get(H_TIER)
    if tier is not None:
        tier = tier.strip().lower()
        if tier not in ("auto", "flex", "standard"):
            raise UserInputError(f"must be auto, flex or standard, got {tier!r}", field=H_TIER)
        allowed = key.tiers if key is not None else ("auto", "flex", "standard", "priority")
        if tier not in allowed and not (tier == "auto" and "flex" in allowed):
            raise UserInputError(f"{tier!r} is not allowed for this key (allowed: {', '.join(allowed)})",
                                 field=H_TIER)
    else:
        tier = key.tier if key is not None else cfg.tier
    dl = headers.get(H_DEADLINE)
    deadline = _deadline_seconds(dl, now) if dl else (key.deadline if key is not None else cfg.deadline)
    mw = headers.get(H_MAX_WAIT)
    max_wait = parse_duration(mw, field=H_MAX_WAIT) if mw else (key.max_wait if key is not None else cfg.max_wait)
    return Controls(tier, deadline, max_wait)
