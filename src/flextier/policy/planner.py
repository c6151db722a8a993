"""The deadline planner: which lane each not-yet-started item goes to, and when.

This is the "UP-tiers" policy of ``docs/deadline-policy.md``, an adaptation of Uniform
Progress from *Can't Be Late* (NSDI'24) to many small requests on three lanes:

* **flex** (half price, may be shed or queue for minutes),
* **standard** (full price, always served, limited only by our rate limits),
* **batch** (half price, asynchronous, up to ``batch_window``).

Why uniform progress: greedy ("flex until the safety net") leaves the cheap lane's late
capacity unused and pays standard for a big block at the end; UP instead compares progress
with the straight line from the start to a slightly early effective deadline and buys
standard only to stay on that line, so flex keeps working the whole time and standard is
bought in small amounts as soon as flex falls behind, when it is still optional.

The planner is a pure unit. The runner calls :meth:`Planner.decide` with an
:class:`Observation` (clock value, counts, measured rates) as often as it likes (every
second, or on every completion) and applies the returned :class:`Decision`. No clock is
read, nothing sleeps and nothing is sent here; the only state is the planner's own (current
mode, hysteresis flag, where the uniform line is anchored, which items were hedged).
``bench/policy_sim.py`` compares it with the baselines on simulated flex traces.

Decision rules, in order (``R = D - now``, ``C = n / r_s + tail`` the standard-only finish
time of the ``n = total - done`` unfinished items at standard rate ``r_s``):

0. **Batch gate** (at the first decision and whenever the job grows): batch when
   ``R >= batch_window + C + margin`` (batch's own SLA then meets the deadline, and batch
   costs what flex costs without any shedding). For a model *without* flex, batch is the
   only discount, so it is used whenever the safety net leaves it at least
   ``batch_min_runway`` seconds (``R >= C + 2d + margin + batch_min_runway``); the safety
   net rescues its stragglers to standard. Otherwise flex (UP) or, without flex, standard.
1. **Flex lane always open** in UP mode (backoff and concurrency are the runner's, see
   :mod:`flextier.policy.concurrency`).
2. **Uniform line** ``ep(t)`` from ``(t_a + d, done_a)`` to ``(D_eff, total)`` with
   ``D_eff = D - 2d - tail``; the anchor ``(t_a, done_a)`` is the start (or resume point, or
   the moment the job grew or left batch), and the first ``d`` seconds let the first answers
   arrive. Progress ``cp = done + in_flight_standard`` (a standard request
   in flight is as good as done; counting it stops the planner from over-buying while
   standard requests are still running). When ``cp < ep(now)`` the standard lane opens at the
   rate that brings ``cp`` to ``ep(now + 2d)`` within ``catch_up`` seconds, net of what flex is
   delivering; it stays open until ``cp >= ep(now + 2d)`` (hysteresis, so the lane does not
   flap on every completion). With an availability forecast (``PlannerConfig.availability``)
   the line is weighted by expected flex availability instead of time (docs/deadline-policy.md §3 rule 5), so a
   job started at a peak leans on the night instead of buying standard at the peak.
3. **Safety net** (sticky): when ``R < C + 2d + margin``, every not-yet-started item goes to
   standard, flex takes no new work, open batches are cancelled, and each in-flight flex item
   whose likely finish leaves no room for a standard redo is hedged (duplicated on standard).
   If standard really sustains ``r_s``, this alone guarantees the deadline whenever it was
   feasible at the start and decisions are at most ``2d + margin`` seconds apart.
4. **Projection** (optional): when the runner supplies a pessimistic flex throughput
   ``r_f`` (e.g. the p25 of per-minute rates over 30 min, see :func:`rate_quantile`), the
   standard rate is at least ``max(0, n - r_f * R_eff) / R_eff``, ``R_eff = D_eff - now``.

6. **Off-peak lane in time** (a clock-priced model, ``PlannerConfig.peak_hours``: DeepSeek): in a
   peak window, nothing starts while waiting for the next off-peak start ``t_off`` still leaves
   ``t_off + C + 2d + margin <= D``; otherwise (and off-peak) standard as usual. The safety net
   is unchanged, so waiting never costs the deadline.

Batch stragglers: while items sit in open batches and waiting on the batch is no
longer provably safe (``batch_submitted_at + batch_window + C + 2d + margin > D``, or the
batch has outlived ``batch_window``), the planner says ``batch_rescue="flex"`` once ``R < C + 2d + margin + max(rescue_runway, C)``
(cancel, move leftovers to flex under UP, which buys standard as needed), and
``batch_rescue="standard"`` at the safety net.

Forced tiers (``--tier flex|standard|batch``) mean forced: one lane, no standard fallback,
no safety net, no rescue. ``slack`` and ``at_risk`` are still reported so the runner can warn.
No deadline: a model with flex runs on flex only and never pays for standard; a model
without flex uses batch (or standard when it has no batch either: the only lane there is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

TIER_MODES = ("auto", "flex", "standard", "batch")

# modes (Decision.mode / Planner.mode)
FLEX_ONLY = "flex-only"          # no deadline, or --tier flex
STANDARD_ONLY = "standard-only"  # --tier standard, or a model with neither flex nor batch
BATCH_ONLY = "batch-only"        # --tier batch, or no deadline on a model without flex
BATCH = "batch"                  # auto: deadline far enough for batch
UP = "up"                        # auto: flex + standard on the uniform line
STANDARD = "standard"            # auto: model without flex, deadline too close for batch
OFFPEAK_WAIT = "offpeak-wait"    # auto: clock-priced model in a peak window, waiting for off-peak
SAFETY = "safety"                # auto: safety net, everything left to standard (sticky)
DONE = "done"                    # nothing left

RESCUE_NONE, RESCUE_FLEX, RESCUE_STANDARD = "none", "flex", "standard"


def default_changeover_delay(mean_backoff: float = 30.0, flex_timeout: float = 900.0,
                             fraction: float = 0.1) -> float:
    """``d`` (docs/deadline-policy.md §2): time lost when a lane choice turns out wrong.

    Mean flex backoff (full jitter, base 2 s, cap 120 s averages a few tens of seconds over a
    shed episode) plus a fraction of the flex timeout (a request that sat in the flex queue
    before being shed). Default 30 + 0.1 * 900 = 120 s.
    """
    return mean_backoff + fraction * flex_timeout


DEFAULT_D = default_changeover_delay()
MIN_D = 30.0


def changeover_delay_for(window_s: float | None, default: float = DEFAULT_D) -> float:
    """The ``d`` a job uses when the user sets none: ``default``, but at most ``window / 120``
    (and at least ``MIN_D``, the mean backoff alone) for a job whose deadline is close.

    Why scale it: ``d`` is spent at the end of every job (the line ends at ``D - 2d - tail``, the
    safety net keeps ``2d + margin + tail`` in reserve), and that reserve goes to standard. At
    120 s it is about 5.5 minutes, 9% of a 1 h window, which is most of what a short job on a
    quiet flex lane pays above the hindsight bound (bench/policy_emusim.py: 1.10x the bound at
    05:00 and 19:00 with 1 h deadlines, 1.04x at 30 s). The guarantee does not rest on ``d``
    alone: the safety net hedges every flex request in flight whose likely finish leaves no
    room for a standard redo, and decisions are far closer together than ``2d + margin``.
    """
    if window_s is None:
        return default
    return min(default, max(MIN_D, window_s / 120.0))


def standard_capacity(concurrency: int, latency_s: float, rpm: float | None = None) -> float:
    """Requests/s the standard lane can sustain: Little's law ``concurrency / latency``, capped
    by the requests-per-minute limit. Feed it to :attr:`Observation.standard_capacity`."""
    if concurrency < 1 or not latency_s > 0:
        raise ValueError("concurrency must be >= 1 and latency > 0")
    cap = concurrency / latency_s
    if rpm is not None:
        cap = min(cap, rpm / 60.0)
    return cap


def rate_quantile(timestamps: Iterable[float], now: float, *, since: float, window: float = 1800.0,
                  bucket: float = 60.0, q: float = 0.25) -> float | None:
    """The ``q``-quantile of per-``bucket`` completion rates (items/s) over the last ``window``.

    A pessimistic flex throughput for the projection check: p25 of per-minute rates over the
    last 30 minutes by default. Only whole buckets after ``since`` (the job or lane start)
    count, so a job that just started is not judged by minutes it did not run; None until one
    whole bucket exists.
    """
    if not (bucket > 0 and window >= bucket and 0 <= q <= 1):
        raise ValueError("need bucket > 0, window >= bucket and 0 <= q <= 1")
    nb = int(min(window, now - since) // bucket)
    if nb < 1:
        return None
    lo = now - nb * bucket
    counts = [0] * nb
    for ts in timestamps:
        if lo <= ts < now:
            counts[min(nb - 1, int((ts - lo) // bucket))] += 1
    counts.sort()
    return counts[min(nb - 1, int(q * nb))] / bucket


@dataclass(frozen=True)
class PlannerConfig:
    """Fixed inputs of one job. Times are seconds on the runner's clock (the same clock as
    :attr:`Observation.now`); ``deadline`` is absolute.

    ``standard_rate`` is the first estimate of what standard sustains (req/s);
    :attr:`Observation.standard_capacity` replaces it once measured. ``tail`` is the standard
    latency of the last request, until :attr:`Observation.standard_latency_p90` is known.
    ``done0`` is the number of items already done at ``t0`` (a resumed job anchors its line
    there). ``catch_up`` is the horizon over which the standard lane closes a gap to the
    line (default ``max(2d, 60)``). ``rescue_runway`` is the least time flex gets after a batch
    rescue. ``model_has_flex`` / ``model_has_batch`` come from the catalog.
    ``availability`` (optional) is a forecast of relative flex availability at a clock value
    (e.g. expected flex throughput by hour of day from the provider's diurnal profile or the
    job history); it bends the line toward the hours when flex is expected to be plentiful
    (docs/deadline-policy.md §3 rule 5). It must be a deterministic function; the safety net does not depend on it.
    ``peak_hours`` (a :class:`~flextier.catalog.peak.PeakHours`, or anything with ``is_peak(t)`` and
    ``next_change(t)``) marks a clock-priced model (DeepSeek): its standard lane is cheaper outside
    the peak windows, so during a peak work waits for the off-peak start as long as standard alone
    would still finish from there (docs/deadline-policy.md §3 rule 6). Deterministic; the safety net
    ignores it.
    """

    t0: float
    total: int
    deadline: float | None = None
    tier_mode: str = "auto"
    standard_rate: float = 1.0
    d: float = DEFAULT_D
    margin: float = 60.0
    tail: float = 30.0
    flex_timeout: float = 900.0
    catch_up: float | None = None
    allow_batch: bool = True
    batch_window: float = 24 * 3600.0
    batch_min_runway: float = 3600.0
    rescue_runway: float = 3600.0
    model_has_flex: bool = True
    model_has_batch: bool = True
    done0: int = 0
    availability: Callable[[float], float] | None = None
    availability_step: float = 300.0
    peak_hours: Any = None

    def __post_init__(self) -> None:
        if self.tier_mode not in TIER_MODES:
            raise ValueError(f"tier_mode must be one of {', '.join(TIER_MODES)}, got {self.tier_mode!r}")
        if not isinstance(self.total, int) or self.total < 0:
            raise ValueError(f"total must be an integer >= 0, got {self.total!r}")
        if not isinstance(self.done0, int) or not 0 <= self.done0 <= self.total:
            raise ValueError(f"done0 must be in [0, total], got {self.done0!r}")
        if not math.isfinite(self.t0):
            raise ValueError("t0 must be finite")
        if self.deadline is not None:
            if not math.isfinite(self.deadline):
                raise ValueError("deadline must be finite (use None for no deadline)")
            if self.deadline <= self.t0:
                raise ValueError(f"the deadline is already past ({self.t0 - self.deadline:.0f} s ago)")
        if not (self.standard_rate > 0 and math.isfinite(self.standard_rate)):
            raise ValueError(f"standard_rate must be > 0, got {self.standard_rate!r}")
        for name in ("d", "margin", "tail", "flex_timeout", "batch_window", "batch_min_runway",
                     "rescue_runway"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (self.availability_step > 0 and math.isfinite(self.availability_step)):
            raise ValueError(f"availability_step must be > 0, got {self.availability_step!r}")
        if self.catch_up is not None and not (self.catch_up > 0 and math.isfinite(self.catch_up)):
            raise ValueError(f"catch_up must be > 0, got {self.catch_up!r}")
        if self.tier_mode == "flex" and not self.model_has_flex:
            raise ValueError("--tier flex asked of a model without a flex tier")
        if self.tier_mode == "batch" and not (self.model_has_batch and self.allow_batch):
            raise ValueError("--tier batch asked of a model (or provider setup) without a batch lane")

    @property
    def catch_up_horizon(self) -> float:
        return self.catch_up if self.catch_up is not None else max(2 * self.d, 60.0)


@dataclass(frozen=True)
class InFlight:
    """One flex attempt in flight: which item, and when (runner clock) it was sent."""

    item_id: str
    started_at: float


@dataclass(frozen=True)
class Observation:
    """What the runner knows at ``now``. Counts are items, not attempts.

    ``done`` counts items finished for good (success or permanent failure) and never
    decreases. ``pending`` is items not started on any lane (new ones, and ones back from a
    shed flex attempt, an expired batch or a cancelled batch). ``total`` is set when the job
    grew (streamed input); it never shrinks. ``standard_capacity`` (req/s) replaces the
    configured standard rate once measured (see :func:`standard_capacity`).
    ``flex_throughput`` is the recent flex completion rate (items/s) and
    ``flex_throughput_pessimistic`` a low quantile of it; the latter turns on the projection
    check. ``batch_submitted_at`` is the earliest submission among open batches.
    """

    now: float
    done: int
    pending: int = 0
    in_flight_standard: int = 0
    flex_in_flight: Sequence[InFlight] = ()
    in_batch: int = 0
    batch_submitted_at: float | None = None
    total: int | None = None
    standard_capacity: float | None = None
    standard_latency_p90: float | None = None
    flex_latency_p90: float | None = None
    flex_throughput: float | None = None
    flex_throughput_pessimistic: float | None = None


@dataclass(frozen=True)
class Decision:
    """What the runner should do from now until the next decision.

    * ``flex_open``: new flex attempts may start for not-yet-started items (up to the AIMD
      limit, after any backoff).
    * ``standard_rate`` (items/s): start that many not-yet-started items per second on standard,
      alongside flex (prefer items that flex has already shed). 0 = standard closed.
    * ``standard_all``: every not-yet-started item goes to standard as fast as its limits
      allow, and no new flex attempt starts. ``standard_rate`` then holds the assumed capacity.
    * ``use_batch``: every not-yet-started item goes into a provider batch.
    * ``batch_rescue``: ``"flex"`` or ``"standard"``: cancel open batches; their unfinished items
      become not-yet-started and follow the fields above (a level, not an edge: repeated while
      items remain in batches). The first copy of an item to finish wins.
    * ``hedge``: item ids of in-flight flex attempts to duplicate on standard now (each id is
      returned once).
    * ``expected_done``: the uniform line ``ep(now)`` (None outside UP); ``slack``: seconds
      before the safety net would trip (None without deadline); ``at_risk``: even
      standard-only cannot finish by the deadline any more.
    * ``wait_until``: nothing starts before this clock value (a clock-priced model waiting for
      its off-peak price, rule 6); the runner shows it and keeps deciding.
    """

    mode: str
    flex_open: bool = False
    standard_rate: float = 0.0
    standard_all: bool = False
    use_batch: bool = False
    batch_rescue: str = RESCUE_NONE
    hedge: tuple[str, ...] = ()
    expected_done: float | None = None
    slack: float | None = None
    at_risk: bool = False
    reason: str = ""
    wait_until: float | None = None


class _Line:
    """The progress line from ``(t, done)`` to ``(end, total)``.

    Uniform by default (docs/deadline-policy.md §3 rule 2). With an availability forecast ``a(t)`` it is the
    time-of-day-weighted line of docs/deadline-policy.md §3 rule 5: ``ep`` grows in proportion to the expected flex
    availability, so the planner does not buy standard at a peak that the night will make up
    for. The forecast is sampled every ``step`` seconds and floored at 2% of its maximum so the
    line keeps moving (and standard can still be bought) through a forecast that says zero.
    """

    def __init__(self, t: float, done: float, end: float, total: int,
                 availability: Callable[[float], float] | None = None, step: float = 300.0) -> None:
        self.t, self.done, self.end, self.total = t, done, end, total
        self._cum: list[float] | None = None
        self._step = step
        span = end - t
        if availability is not None and span > 0:
            k = max(1, math.ceil(span / step))
            self._step = span / k
            raw = [max(0.0, float(availability(t + (i + 0.5) * self._step))) for i in range(k)]
            floor = 0.02 * max(raw) if max(raw) > 0 else 1.0
            self._w = [max(w, floor) for w in raw]
            self._cum = [0.0]
            for w in self._w:
                self._cum.append(self._cum[-1] + w)

    def _frac(self, t: float) -> float:
        """Share of the line's weight that lies before ``t`` (0 at the start, 1 at the end)."""
        span = self.end - self.t
        if span <= 0 or t >= self.end:
            return 1.0
        if t <= self.t:
            return 0.0
        if self._cum is None:
            return (t - self.t) / span
        x = (t - self.t) / self._step
        i = min(int(x), len(self._w) - 1)
        return (self._cum[i] + (x - i) * self._w[i]) / self._cum[-1]

    def at(self, t: float) -> float:
        return self.done + (self.total - self.done) * self._frac(t)

    def slope(self, t: float) -> float:
        """Items/s the line asks for at ``t``."""
        span = self.end - self.t
        if span <= 0 or t >= self.end:
            return 0.0
        if self._cum is None or t < self.t:
            return (self.total - self.done) / span
        i = min(int((t - self.t) / self._step), len(self._w) - 1)
        return (self.total - self.done) * self._w[i] / (self._cum[-1] * self._step)


class Planner:
    """UP-tiers with a batch gate, straggler rescue, safety net and hedging. See the module doc.

    State: the current mode, the hysteresis flag of the standard lane, the line anchor, the
    total (which may grow), the ids already hedged and the last clock value and done count
    (neither may go backwards).
    """

    def __init__(self, config: PlannerConfig) -> None:
        self.config = config
        self.total = config.total
        self.mode: str | None = None
        self.standard_open = False
        self._hedged: set[str] = set()
        self._last_now: float | None = None
        self._last_done: int | None = None
        self._line: _Line | None = None

    # -- helpers ----------------------------------------------------------------------
    def _eff_deadline(self, tail: float) -> float:
        assert self.config.deadline is not None
        return self.config.deadline - 2 * self.config.d - tail

    def _anchor(self, t: float, done: int, tail: float) -> None:
        """Start the uniform line ``d`` after ``t``: no lane can show progress before a request's
        latency has passed, and ``d`` is the time allowed to learn that a lane choice was wrong.
        Without this delay the planner would buy standard in the first seconds of every job,
        while the first flex answers are still on their way."""
        self._line = _Line(t + self.config.d, float(done), self._eff_deadline(tail), self.total,
                           self.config.availability, self.config.availability_step)
        self.standard_open = False

    def _batch_gate(self, r: float, c: float) -> bool:
        cfg = self.config
        if not (cfg.allow_batch and cfg.model_has_batch):
            return False
        if cfg.model_has_flex:
            return r >= cfg.batch_window + c + cfg.margin
        return r >= c + 2 * cfg.d + cfg.margin + cfg.batch_min_runway

    def _deadline_mode(self, r: float, c: float) -> str:
        if self._batch_gate(r, c):
            return BATCH
        return UP if self.config.model_has_flex else STANDARD

    def _static_mode(self) -> str | None:
        """The mode when no deadline-driven choice exists (forced tier or no deadline)."""
        cfg = self.config
        if cfg.tier_mode == "flex":
            return FLEX_ONLY
        if cfg.tier_mode == "standard":
            return STANDARD_ONLY
        if cfg.tier_mode == "batch":
            return BATCH_ONLY
        if cfg.deadline is None:
            if cfg.model_has_flex:
                return FLEX_ONLY
            if cfg.model_has_batch and cfg.allow_batch:
                return BATCH_ONLY
            return STANDARD_ONLY
        return None

    def _validate(self, obs: Observation) -> None:
        if not math.isfinite(obs.now):
            raise ValueError("now must be finite")
        if self._last_now is not None and obs.now < self._last_now:
            raise ValueError(f"the clock went backwards ({obs.now} < {self._last_now})")
        if obs.total is not None:
            if obs.total < self.total:
                raise ValueError(f"total cannot shrink ({obs.total} < {self.total})")
        total = obs.total if obs.total is not None else self.total
        if not 0 <= obs.done <= total:
            raise ValueError(f"done must be in [0, total={total}], got {obs.done}")
        if self._last_done is not None and obs.done < self._last_done:
            raise ValueError(f"done cannot go down ({obs.done} < {self._last_done})")
        for name in ("pending", "in_flight_standard", "in_batch"):
            if getattr(obs, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if obs.standard_capacity is not None and not obs.standard_capacity > 0:
            raise ValueError("standard_capacity must be > 0 when given")

    def _hedges(self, obs: Observation, tail: float, r_s: float) -> tuple[str, ...]:
        """In-flight flex items whose likely end leaves no time for a standard redo.

        Likely end: ``started + p90`` while younger than the flex p90 latency; past that the
        only bound left is ``started + flex_timeout`` (the runner's flex timeout), and an attempt
        past that has no bound at all and is always hedged. The flex copy
        is kept only if, should it fail at that end together with every other kept copy, their
        standard redos (``k / r_s`` of standard time) would still finish ``margin`` before the
        deadline. Without a measured p90 the ends are hard bounds, which makes the safety-net
        guarantee exact; with one, it is a p90 bet, as docs/deadline-policy.md §3 rule 3 intends (pay twice only near the end).
        """
        cfg = self.config
        assert cfg.deadline is not None
        p90 = obs.flex_latency_p90 if obs.flex_latency_p90 is not None else cfg.flex_timeout
        live = [f for f in obs.flex_in_flight if f.item_id not in self._hedged]
        redo = len(live) / r_s
        out = []
        for f in live:
            elapsed = obs.now - f.started_at
            if elapsed >= cfg.flex_timeout:  # past every bound we have: nothing says it will end
                out.append(f.item_id)
                continue
            end = f.started_at + (p90 if elapsed < p90 else cfg.flex_timeout)
            if end + redo + tail + cfg.margin > cfg.deadline:
                out.append(f.item_id)
        self._hedged.update(out)
        return tuple(out)

    # -- the decision -----------------------------------------------------------------
    def decide(self, obs: Observation) -> Decision:
        """The decision at ``obs.now``. Call it often; it is cheap (O(flex in flight))."""
        self._validate(obs)
        cfg = self.config
        grew = obs.total is not None and obs.total > self.total
        if obs.total is not None:
            self.total = obs.total
        self._last_now = obs.now
        self._last_done = obs.done
        r_s = obs.standard_capacity if obs.standard_capacity is not None else cfg.standard_rate
        tail = obs.standard_latency_p90 if obs.standard_latency_p90 is not None else cfg.tail
        n = self.total - obs.done
        c = n / r_s + tail if n > 0 else 0.0
        r = None if cfg.deadline is None else cfg.deadline - obs.now
        slack = None if r is None else r - (c + 2 * cfg.d + cfg.margin)
        at_risk = r is not None and n > 0 and r < c

        static = self._static_mode()
        if static is not None:
            self.mode = static
            return self._static_decision(static, n, r_s, slack, at_risk)
        assert r is not None and slack is not None

        if n == 0:
            self.mode = DONE if self.mode != SAFETY else SAFETY
            return Decision(mode=DONE, slack=slack, reason="nothing left to do")

        # mode transitions: first decision, job growth, safety net
        if self.mode is None:
            self.mode = self._deadline_mode(r, c)
            if self.mode == UP:
                self._anchor(cfg.t0, cfg.done0, tail)
        elif grew and self.mode in (UP, BATCH, STANDARD, OFFPEAK_WAIT, DONE):
            new = self._deadline_mode(r, c)
            if new == UP:
                self._anchor(obs.now, obs.done, tail)
            self.mode = new
        if self.mode != SAFETY and slack < 0:
            self.mode = SAFETY

        if self.mode == SAFETY:
            hedges = self._hedges(obs, tail, r_s)
            why = "safety net: standard-only finish time + 2d + margin exceeds the time left"
            if at_risk:
                why += "; AT RISK: even standard-only cannot finish by the deadline"
            return Decision(mode=SAFETY, standard_rate=r_s, standard_all=True,
                            batch_rescue=RESCUE_STANDARD if obs.in_batch > 0 else RESCUE_NONE,
                            hedge=hedges, slack=slack, at_risk=at_risk, reason=why)

        rescue = RESCUE_NONE
        if obs.in_batch > 0 and cfg.model_has_flex:
            submitted = obs.batch_submitted_at if obs.batch_submitted_at is not None else obs.now
            # safe = even if the batch returns nothing, its leftovers come back by the end of the
            # window and standard still makes it; a batch already past its window has no bound
            expiry = submitted + cfg.batch_window
            batch_safe = obs.now <= expiry and expiry + c + 2 * cfg.d + cfg.margin <= cfg.deadline
            if not batch_safe and slack < max(cfg.rescue_runway, c):
                rescue = RESCUE_FLEX
                if self.mode != UP:
                    self.mode = UP
                    self._anchor(obs.now, obs.done, tail)

        if self.mode == BATCH:
            if obs.pending > 0 and not self._batch_gate(r, c):
                self.mode = UP if cfg.model_has_flex else STANDARD
                if self.mode == UP:
                    self._anchor(obs.now, obs.done, tail)
            else:
                return Decision(mode=BATCH, use_batch=True, slack=slack,
                                reason="deadline leaves room for the batch lane")
        if self.mode in (STANDARD, OFFPEAK_WAIT):
            wait = self._offpeak_wait(obs.now, c)
            if wait is not None:
                self.mode = OFFPEAK_WAIT
                return Decision(mode=OFFPEAK_WAIT, slack=slack, wait_until=wait,
                                reason=f"peak hours: waiting for the off-peak price from {_hhmm(wait)} UTC "
                                       "(the deadline still leaves standard-only time from there)")
            self.mode = STANDARD
            why = "model has no flex and the deadline is too close for batch"
            if cfg.peak_hours is not None:
                why = ("off-peak hours: standard at the off-peak price" if not cfg.peak_hours.is_peak(obs.now)
                       else "peak hours, and waiting for off-peak would miss the deadline: standard at the peak price")
            return Decision(mode=STANDARD, standard_rate=r_s, standard_all=True, slack=slack,
                            at_risk=at_risk, reason=why)
        return self._up(obs, r_s, tail, slack, rescue)

    def _offpeak_wait(self, now: float, c: float) -> float | None:
        """The off-peak start to wait for, when it is better and safe (rule 6), else None.

        Safe: from that instant, standard alone (``C``) plus the safety net's reserve
        (``2d + margin``) still fits before the deadline, so waiting never spends the slack the
        safety net relies on; and the decision is re-made on every call, so a job that grew or a
        standard lane that turned slower stops waiting at once."""
        cfg = self.config
        ph = cfg.peak_hours
        if ph is None or cfg.deadline is None or not ph.is_peak(now):
            return None
        t_off = ph.next_change(now)
        if t_off + c + 2 * cfg.d + cfg.margin <= cfg.deadline:
            return t_off
        return None

    def _up(self, obs: Observation, r_s: float, tail: float, slack: float, rescue: str) -> Decision:
        cfg = self.config
        if self._line is None or self._line.total != self.total:
            self._anchor(obs.now, obs.done, tail)
        line = self._line
        assert line is not None
        if abs(line.end - self._eff_deadline(tail)) > 1.0:  # the measured tail moved the end: redraw
            self._line = line = _Line(line.t, line.done, self._eff_deadline(tail), self.total,
                                      self.config.availability, self.config.availability_step)
        cp = obs.done + obs.in_flight_standard
        ep_now = line.at(obs.now)
        ep_ahead = line.at(obs.now + 2 * cfg.d)
        if not self.standard_open and cp < ep_now:
            self.standard_open = True
        elif self.standard_open and cp >= ep_ahead:
            self.standard_open = False
        rate = 0.0
        why = "on or ahead of the uniform line: flex only"
        if self.standard_open:
            gap = max(0.0, ep_ahead - cp)
            r_f = obs.flex_throughput or 0.0
            rate = max(0.0, line.slope(obs.now) + gap / cfg.catch_up_horizon - r_f)
            why = f"behind the uniform line by {max(0.0, ep_now - cp):.1f} items: standard lane open"
        if obs.flex_throughput_pessimistic is not None:
            r_eff = line.end - obs.now
            remaining = max(0, self.total - cp)
            need = r_s if r_eff <= 0 else max(0.0, remaining - obs.flex_throughput_pessimistic * r_eff) / r_eff
            if need > rate:
                rate = need
                why = "projection: pessimistic flex throughput cannot finish in time"
        rate = min(rate, r_s)
        if rescue == RESCUE_FLEX:
            why = "batch stragglers moved to flex; " + why
        return Decision(mode=UP, flex_open=True, standard_rate=rate, batch_rescue=rescue,
                        expected_done=ep_now, slack=slack, reason=why)

    def _static_decision(self, mode: str, n: int, r_s: float, slack: float | None, at_risk: bool) -> Decision:
        if n == 0:
            return Decision(mode=DONE, slack=slack, reason="nothing left to do")
        forced = self.config.tier_mode != "auto"
        src = f"--tier {self.config.tier_mode}" if forced else "no deadline"
        if mode == FLEX_ONLY:
            return Decision(mode=mode, flex_open=True, slack=slack, at_risk=at_risk,
                            reason=f"{src}: flex only, never standard")
        if mode == BATCH_ONLY:
            return Decision(mode=mode, use_batch=True, slack=slack, at_risk=at_risk,
                            reason=f"{src}: batch only" + ("" if forced else " (model has no flex)"))
        return Decision(mode=mode, standard_rate=r_s, standard_all=True, slack=slack, at_risk=at_risk,
                        reason=f"{src}: standard only" + ("" if forced else " (model has neither flex nor batch)"))


def _hhmm(t: float) -> str:
    import time as _t

    return _t.strftime("%a %H:%M", _t.gmtime(t))


__all__ = ["OFFPEAK_WAIT", "PlannerConfig", "Observation", "InFlight", "Decision", "Planner", "TIER_MODES",
           "default_changeover_delay", "changeover_delay_for", "standard_capacity", "rate_quantile", "DEFAULT_D",
           "FLEX_ONLY", "STANDARD_ONLY", "BATCH_ONLY", "BATCH", "UP", "STANDARD", "SAFETY", "DONE",
           "RESCUE_NONE", "RESCUE_FLEX", "RESCUE_STANDARD"]
