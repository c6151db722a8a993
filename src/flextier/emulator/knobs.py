"""Every tunable number of the emulator, with its default, in one typed record.

Profiles, profile files, ``serve(**knobs)``, the CLI's ``--knob k=v`` and
``POST /_emulator/profile`` all end up as a :class:`Knobs`, so a knob is defined
exactly once and a typo is an error, not a silently ignored setting. Pure: no I/O.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ..errors import KnobError  # the hierarchy's home; re-exported here

__all__ = ["Knobs", "KnobError", "knob_names"]


_CHOICES: dict[str, tuple[str, ...]] = {
    "load_mode": ("diurnal", "constant"),
    "diurnal_shape": ("two_hump", "single"),
    "preempt_mode": ("requeue", "fail"),
    "openai_flex_code": ("resource_unavailable", "flex_unavailable"),
}


#: Upper bounds of knobs whose absurd values would hang or exhaust the emulator (``slots=1e10``:
#: a pool that never sheds and a batch model stepping through 10^10 slot-seconds per second).
_MAX: dict[str, float] = {
    "slots": 100_000, "replicas": 100_000, "q_max": 1_000_000, "cache_lru_size": 10_000_000,
    "cache_min_tokens": 10_000_000, "cache_block_tokens": 1_000_000, "output_tokens_median": 10_000_000,
    "output_tokens_max": 10_000_000, "rpm_limit": 10**12, "tpm_limit": 10**15, "r_day": 1_000.0,
    "u_peak": 10.0, "constant_rho": 10.0, "theta_admit": 10.0, "theta_shed": 10.0, "theta_batch": 10.0,
    "preempt_at": 10.0, "overload_rho": 10.0, "burst_sigma": 10.0, "weekend_factor": 100.0,
    "reasoning_ratio": 1_000.0, "latency_scale": 1_000_000.0, "flex_slowdown": 1_000_000.0,
    "output_tokens_sigma": 10.0,
}
_MAX_TIME_S = 1e10           # any *_s knob: ~300 years of emulated time is plenty
_MAX_ANY = 1e15              # any other number (a knob added later included)


@dataclass(frozen=True)
class Knobs:
    """Emulator settings. Times are emulated seconds; probabilities are per request."""

    # -- standard demand (docs/capacity-model.md §2) --------------------------------
    load_mode: str = "diurnal"          # "diurnal": daily/weekly curve; "constant": rho_s = constant_rho
    constant_rho: float = 0.75          # mean standard utilisation when load_mode == "constant"
    u_peak: float = 0.75                # standard utilisation at the weekday peak (capacity sizing)
    r_day: float = 4.0                  # peak:trough ratio of the daily curve
    weekend_factor: float = 0.5         # Sat/Sun demand relative to weekdays
    diurnal_shape: str = "two_hump"     # "two_hump" (10.5 h and 15.5 h peaks) or "single"
    tz_offset_h: float = 0.0            # provider-local hour = UTC hour + tz_offset_h
    burst_sigma: float = 0.3            # stationary sd of ln B (mean-one log-normal burst)
    burst_ar: float = 0.8               # AR(1) coefficient of ln B per minute
    # -- capacity, admission, queue, preemption (docs/capacity-model.md §3) -----------------------
    slots: int = 64                     # K concurrent slots per model pool
    theta_admit: float = 0.6            # flex is dispatched only while U < theta_admit
    theta_shed: float = 0.8             # fast shed when U >= theta_shed and queue is full
    theta_batch: float = 0.5            # batch lane dispatch threshold (used by the batch lane)
    q_max: int = 5                      # queued flex requests per replica before fast shed
    replicas: int = 8                   # replicas per pool (queue limit = q_max * replicas)
    w_max_s: float = 900.0              # longest flex queue wait before a timeout error
    preempt_at: float = 1.0             # preempt newest flex while rho_s + flex/K > preempt_at
    preempt_mode: str = "requeue"       # "requeue" (back to queue head) or "fail"
    p_fail_on_preempt: float = 1.0      # with preempt_mode "fail": chance a preempted request errors
    flex_shed_p: float = 0.0            # extra chance to shed any flex request (outage = 1.0)
    flex_slowdown: float = 1.0          # flex service time multiplier
    overload_rho: float = 1.1           # Anthropic answers 529 while rho_s >= overload_rho
    anthropic_overload_p: float = 0.0   # extra chance of an Anthropic 529 on any request
    # -- latency (emulated seconds) ----------------------------------------------
    ttft_s: float = 0.4                 # time to first token
    per_output_token_s: float = 0.01    # decode time per output token (incl. reasoning)
    per_input_token_s: float = 0.0      # prefill time per uncached input token
    latency_scale: float = 1.0          # multiplies all service time; 0 = no added latency
    # -- generated output ----------------------------------------------------------
    output_tokens_median: int = 200     # median visible output length (log-normal)
    output_tokens_sigma: float = 0.6    # sd of ln(visible output length)
    output_tokens_max: int = 4096       # cap when the request sets no max tokens
    reasoning_ratio: float = 0.5        # mean reasoning tokens per visible token (reasoning models)
    tool_call_rate: float = 0.5         # chance an answer with tool_choice "auto" calls a tool (seeded)
    # -- prompt caching ------------------------------------------------------------
    cache_min_tokens: int = 1024        # shortest cacheable prefix
    cache_block_tokens: int = 128       # cached length grows in blocks of this size
    cache_lru_size: int = 4096          # prefixes remembered per provider/model
    cache_requires_marker: bool = True  # Anthropic/Bedrock cache only with cache_control/cachePoint
    # -- provider error flavours ------------------------------------------------------
    openai_flex_code: str = "resource_unavailable"  # or "flex_unavailable"
    gemini_429_fraction: float = 0.2    # share of Gemini flex sheds sent as 429 RESOURCE_EXHAUSTED
    gemini_retry_delay_s: float = 34.0  # RetryInfo.retryDelay on those 429s
    bedrock_503_fraction: float = 0.5   # share of Bedrock flex sheds sent as ServiceUnavailableException
    # -- ordinary rate limits ---------------------------------------------------------
    rpm_limit: int = 1_000_000          # requests per emulated minute per provider/model
    tpm_limit: int = 1_000_000_000      # tokens per emulated minute per provider/model
    # -- faults (each alone or all in chaos) ------------------------------------------
    fault_reset_p: float = 0.0          # connection reset mid-response (after service: billed)
    fault_truncate_p: float = 0.0       # stream cut before its end (after service: billed)
    fault_500_p: float = 0.0            # HTTP 500 before service (not billed)
    fault_502_p: float = 0.0            # HTTP 502 before service (not billed)
    fault_slow_first_byte_p: float = 0.0  # delay before the response head
    slow_first_byte_s: float = 30.0     # that delay
    fault_rate_limit_p: float = 0.0     # ordinary 429 rate limit with retry-after
    rate_limit_retry_after_s: float = 2.0
    fault_quota_p: float = 0.0          # insufficient_quota-style refusal
    bill_interrupted: bool = True       # bill reset/truncated responses whose work was done

    # ------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "Knobs":
        """A copy with ``changes`` applied; values may be strings (from the CLI) and are coerced."""
        if not changes:
            return self
        types = {f.name: f.type for f in fields(self)}
        coerced: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in types:
                raise KnobError(f"unknown knob {key!r}", key)
            coerced[key] = _coerce(key, types[key], value)
        new = dataclasses.replace(self, **coerced)
        new.validate()
        return new

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if v != v or v in (float("inf"), float("-inf")):
                    raise KnobError(f"{f.name} must be a finite number, got {v!r}", f.name)
                top = _MAX.get(f.name, _MAX_TIME_S if f.name.endswith("_s") else _MAX_ANY)
                if abs(v) > top:
                    raise KnobError(f"{f.name} must be at most {top:g}, got {v!r}", f.name)
            if f.name in _CHOICES and v not in _CHOICES[f.name]:
                raise KnobError(f"{f.name} must be one of {', '.join(_CHOICES[f.name])}, got {v!r}", f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0 and f.name != "tz_offset_h":
                raise KnobError(f"{f.name} must be >= 0, got {v!r}", f.name)
            if (f.name.endswith("_p") or f.name.endswith("_fraction")) and not 0 <= v <= 1:
                raise KnobError(f"{f.name} is a probability in [0, 1], got {v!r}", f.name)
        if not 0 <= self.tool_call_rate <= 1:
            raise KnobError(f"tool_call_rate is a probability in [0, 1], got {self.tool_call_rate!r}",
                            "tool_call_rate")
        if self.slots < 1:
            raise KnobError("slots must be >= 1", "slots")
        if not -24 <= self.tz_offset_h <= 24:
            raise KnobError(f"tz_offset_h must be in [-24, 24], got {self.tz_offset_h!r}", "tz_offset_h")
        if not 0 <= self.burst_ar < 1:
            raise KnobError("burst_ar must be in [0, 1)", "burst_ar")
        if self.r_day < 1:
            raise KnobError("r_day must be >= 1", "r_day")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def knob_names() -> list[str]:
    return [f.name for f in fields(Knobs)]


def _coerce(key: str, typ: Any, value: Any) -> Any:
    tname = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if tname == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)):
                return bool(value)
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tname == "int":
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if tname == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tname == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise KnobError(f"knob {key!r} expects {tname}, got {value!r}", key) from None
    return value


def merge(base: Knobs, *layers: Mapping[str, Any] | None) -> Knobs:
    """Apply knob mappings in order (later wins)."""
    out = base
    for layer in layers:
        if layer:
            out = out.replace(**dict(layer))
    return out
