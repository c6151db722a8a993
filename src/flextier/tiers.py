"""Canonical tier names and the provider spellings that map onto them.

Providers spell the same tier differently (OpenAI ``default``, Gemini ``FLEX`` or
``SERVICE_TIER_FLEX``, Bedrock ``{"type": "default"}``). Everything inside flextier
uses the four canonical names below; adapters call :func:`normalize_tier` on what
the provider *reports* it served, because that, not the request, decides the price.
"""
from __future__ import annotations

STANDARD = "standard"
FLEX = "flex"
BATCH = "batch"
PRIORITY = "priority"
#: a price tier, not a service level: a clock-priced model's (DeepSeek's) standard service outside
#: its published peak hours (catalog ``peak_hours``; :func:`flextier.cost.clock_tier`)
OFFPEAK = "offpeak"
TIERS: tuple[str, ...] = (STANDARD, FLEX, BATCH, PRIORITY, OFFPEAK)

_ALIASES = {
    "default": STANDARD,
    "standard": STANDARD,
    "standard_only": STANDARD,
    "on_demand": STANDARD,
    "scale": STANDARD,
    "flex": FLEX,
    "on_demand_flex": FLEX,
    "batch": BATCH,
    "priority": PRIORITY,
    "fast": PRIORITY,
    "on_demand_priority": PRIORITY,
    "offpeak": OFFPEAK,
}


def normalize_tier(value: object) -> str | None:
    """Map a provider's tier spelling to a canonical tier, or None when unrecognised.

    Accepts strings in any case, with an optional ``SERVICE_TIER_`` prefix, and Bedrock's
    ``{"type": ...}`` objects. Unknown strings give None so callers can flag them instead
    of silently pricing at the wrong tier.
    """
    if isinstance(value, dict):
        value = value.get("type")
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v.startswith("service_tier_"):
        v = v[len("service_tier_"):]
    return _ALIASES.get(v)
