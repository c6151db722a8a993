"""Named load profiles and profile files: each is just a set of knob overrides.

A profile says *what kind of day* the provider is having (``calm`` to ``chaos``);
everything it changes is an ordinary knob, so a profile file (JSON) or CLI knobs
can derive new scenarios without code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .knobs import KnobError, Knobs, merge

__all__ = ["PROFILES", "build_knobs", "load_profile_file"]

_ALL_FAULTS: dict[str, Any] = {
    "fault_reset_p": 0.01,
    "fault_truncate_p": 0.02,
    "fault_500_p": 0.01,
    "fault_502_p": 0.01,
    "fault_slow_first_byte_p": 0.02,
    "fault_rate_limit_p": 0.02,
    "fault_quota_p": 0.002,
    "anthropic_overload_p": 0.03,
}

PROFILES: dict[str, dict[str, Any]] = {
    # flex is always served quickly: low constant load, no bursts
    "calm": {"load_mode": "constant", "constant_rho": 0.2, "burst_sigma": 0.0},
    # the daily and weekly curve of docs/capacity-model.md §2
    "weekday": {"load_mode": "diurnal"},
    # a sustained weekday peak (rho_s = u_peak, bursts on)
    "peak": {"load_mode": "constant", "constant_rho": 0.75},
    # every flex request is shed
    "outage": {"load_mode": "constant", "constant_rho": 0.95, "flex_shed_p": 1.0},
    # peak plus every injected fault
    "chaos": {"load_mode": "constant", "constant_rho": 0.75, **_ALL_FAULTS},
}


def build_knobs(profile: str, *layers: Mapping[str, Any] | None) -> Knobs:
    """Defaults, then the named profile, then each layer of knob overrides."""
    if profile not in PROFILES:
        raise KnobError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})", "profile")
    return merge(Knobs(), PROFILES[profile], *layers)


def load_profile_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read a JSON profile file: ``{"profile": "peak", "knobs": {...}}`` or a flat knob object.

    Returns the base profile name (None if the file does not name one) and the knobs.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise KnobError(f"cannot read profile file {str(p)!r}: {exc.strerror}", "profile_file") from None
    except json.JSONDecodeError as exc:
        raise KnobError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}", "profile_file") from None
    if not isinstance(data, dict):
        raise KnobError(f"{p}: top level must be an object", "profile_file")
    if "knobs" in data or "profile" in data:
        extra = set(data) - {"profile", "knobs", "description"}
        if extra:
            raise KnobError(f"{p}: unexpected keys {sorted(extra)}", "profile_file")
        knobs = data.get("knobs") or {}
        base = data.get("profile")
        if base is not None and not isinstance(base, str):
            raise KnobError(f"{p}: 'profile' must be a string", "profile_file")
    else:
        knobs, base = data, None
    if not isinstance(knobs, dict):
        raise KnobError(f"{p}: 'knobs' must be an object", "profile_file")
    Knobs().replace(**knobs)  # validate names and types early
    return base, knobs
