"""How many flex requests to keep in flight, and how fast any lane may send.

Two different signals slow a job down, and they must not be mixed up:

* **Flex capacity errors** (:class:`~flextier.errors.FlexCapacityUnavailable`: the
  provider shed a flex request because its spare capacity is gone). The right answer is
  fewer flex requests in flight, found by probing: :class:`AimdController` grows the flex
  window additively while requests succeed and cuts it multiplicatively on a shed, the
  same rule TCP uses to find a bottleneck it cannot see.
* **Ordinary rate limits** (:class:`~flextier.errors.RateLimited`: RPM/TPM of the
  account). Capacity is fine, we are just sending too fast. Cutting the flex window would
  throw away flex capacity for nothing; the right answer is pacing, done by
  :class:`RateLimiter` (token buckets for requests and tokens, fed by flags or by the
  ``x-ratelimit-*`` response headers).

Both are pure: every method takes ``now`` (seconds on the runner's clock) explicitly and
nothing here sleeps, reads a clock or does I/O, so the runner, the simulator and the tests
drive them with any clock, including a scaled emulator clock.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from .rules import is_capacity_signal

# ``is_capacity_signal`` (re-exported here) is the decision table's ``cut_window`` for a flex
# attempt: only :class:`~flextier.policy.errors.FlexCapacityUnavailable` counts. A rate limit
# is an account limit (pace instead); timeouts, 5xx and bad requests say nothing reliable about
# spare flex capacity, and counting them would let a flaky network collapse the window.


@dataclass(frozen=True)
class AimdConfig:
    """Knobs of :class:`AimdController`.

    ``max_concurrency`` is the user's ``--concurrency`` ceiling. ``initial`` defaults to a
    cautious 4 (capped by the ceiling) so a job starting at peak does not open with a burst of
    sheds. ``increase`` is the additive step per *window's worth* of successes (TCP's +1 per
    RTT), ``decrease`` the multiplicative factor on a shed. ``cooldown`` (seconds) allows at
    most one cut per congestion event: when capacity goes, every request in flight is shed
    within moments, and cutting once per shed would collapse the window to 1 for one event.
    ``slow_start`` (TCP's slow start): until the first shed, every success adds a whole
    ``increase`` (the window doubles per window's worth of successes), so on a calm provider
    the window reaches ``max_concurrency`` after about that many successes instead of
    ~max²/2 (32,000 at 256); the first capacity error ends it for good.
    """

    max_concurrency: int
    initial: int | None = None
    increase: float = 1.0
    decrease: float = 0.5
    cooldown: float = 5.0
    slow_start: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, got {self.max_concurrency!r}")
        if self.initial is not None and (not isinstance(self.initial, int) or self.initial < 1):
            raise ValueError(f"initial must be an integer >= 1, got {self.initial!r}")
        if not (self.increase > 0 and math.isfinite(self.increase)):
            raise ValueError(f"increase must be > 0, got {self.increase!r}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {self.decrease!r}")
        if not (self.cooldown >= 0 and math.isfinite(self.cooldown)):
            raise ValueError(f"cooldown must be >= 0, got {self.cooldown!r}")


class AimdController:
    """Additive-increase / multiplicative-decrease window for the flex lane.

    The runner keeps at most :attr:`limit` flex requests in flight and reports each flex
    outcome with :meth:`on_success`, :meth:`on_capacity_error` or :meth:`observe`. The window
    is a float internally (so growth of ``increase / window`` per success adds up to about
    ``increase`` per full window) and :attr:`limit` is its floor, always in
    ``[1, max_concurrency]``.

    After a shed episode (cuts with no success between them; a long outage drives the window to
    1), the window slow-starts back to half the size it had when the episode began, as TCP does
    up to its ``ssthresh``, and grows additively from there.
    """

    def __init__(self, config: AimdConfig) -> None:
        self.config = config
        start = config.initial if config.initial is not None else 4
        self._window = float(min(start, config.max_concurrency))
        self._last_cut: float | None = None
        self.cuts = 0
        self.slow_start = config.slow_start
        # TCP's ssthresh: the window one cut below where the last congestion episode began.
        # Below it the window grows a whole ``increase`` per success (doubling per round trip),
        # so a long shed episode that drove the window to 1 does not cost many round trips
        # of idle flex capacity once capacity is back; above it growth is additive again.
        self._ssthresh = 0.0
        self._in_episode = False

    @property
    def limit(self) -> int:
        """Flex requests allowed in flight now: an integer in ``[1, max_concurrency]``."""
        return max(1, min(self.config.max_concurrency, int(self._window)))

    @property
    def window(self) -> float:
        """The un-floored window, for display and tests."""
        return self._window

    def on_success(self, now: float) -> None:
        """A flex request was served: probe for more capacity, up to the ceiling."""
        del now  # growth is per success, not per second; kept for a uniform call shape
        self._in_episode = False
        fast = self.slow_start or self._window < self._ssthresh
        step = self.config.increase if fast else self.config.increase / max(self._window, 1.0)
        self._window = min(float(self.config.max_concurrency), self._window + step)

    def on_capacity_error(self, now: float) -> bool:
        """A flex request was shed. Cut the window unless a cut happened within ``cooldown``.

        Returns True when this call cut the window.
        """
        self.slow_start = False
        if self._last_cut is not None and now - self._last_cut < self.config.cooldown:
            return False
        if not self._in_episode:      # the first cut since a success starts an episode
            self._ssthresh = max(1.0, self._window * self.config.decrease)
            self._in_episode = True
        self._window = max(1.0, self._window * self.config.decrease)
        self._last_cut = now
        self.cuts += 1
        return True

    def observe(self, error: BaseException | None, now: float) -> None:
        """Feed one flex outcome: ``None`` for success, else the exception it ended with.

        Errors that are not capacity signals (see :func:`is_capacity_signal`) leave the window
        alone: a rate limit is handled by :class:`RateLimiter`, other failures by retries.
        """
        if error is None:
            self.on_success(now)
        elif is_capacity_signal(error):
            self.on_capacity_error(now)


# -- pacing ----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration as sent in ``x-ratelimit-reset-*`` headers.

    Accepts ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``, ``"250us"`` and a bare number of
    seconds (``"0.5"``). Raises ValueError on anything else, so a header in a format we do not
    know is noticed instead of read as 0 (which would disable pacing).
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"bad duration {text!r}")
        return value
    pos = 0
    total = 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"bad duration {text!r}")
    return total


class TokenBucket:
    """A token bucket on an explicit clock: ``capacity`` tokens, refilled at ``rate`` per second.

    Starts full, as a fresh per-minute limit does. :meth:`try_take` either takes the tokens
    (returns 0.0) or takes nothing and returns the seconds to wait until they would be there,
    so a caller can sleep exactly that long. A request larger than the capacity could never
    pass; it is allowed once the bucket is full (and leaves it empty) rather than blocking the
    job forever, because the provider, not us, is the judge of an oversized request.
    """

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if not (capacity > 0 and math.isfinite(capacity)):
            raise ValueError(f"capacity must be > 0, got {capacity!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._level = float(capacity)
        self._at = now
        self._not_before = -math.inf

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
            self._at = now

    def level(self, now: float) -> float:
        """Tokens available at ``now`` (may be negative after a refund shortfall)."""
        self._refill(now)
        return self._level

    def try_take(self, n: float, now: float) -> float:
        """Take ``n`` tokens and return 0.0, or take none and return the seconds to wait."""
        if n < 0:
            raise ValueError("cannot take a negative number of tokens")
        self._refill(now)
        if now < self._not_before:
            return self._not_before - now
        need = min(n, self.capacity)
        if self._level >= need:
            self._level -= n
            return 0.0
        return (need - self._level) / self.rate

    def give_back(self, n: float, now: float) -> None:
        """Return ``n`` tokens (negative ``n`` takes more), e.g. when the real usage is known."""
        self._refill(now)
        self._level = min(self.capacity, self._level + n)

    def clamp(self, remaining: float, now: float) -> None:
        """Never believe we have more than the server says remains."""
        self._refill(now)
        self._level = min(self._level, float(remaining))

    def hold_until(self, t: float) -> None:
        """Refuse every take before ``t`` (a server-imposed pause)."""
        self._not_before = max(self._not_before, t)

    def reconfigure(self, rate: float, capacity: float, now: float) -> None:
        """Adopt a new limit (e.g. read from a header) keeping the current level."""
        self._refill(now)
        if rate > 0 and capacity > 0:
            self.rate, self.capacity = float(rate), float(capacity)
            self._level = min(self._level, self.capacity)


class RateLimiter:
    """Requests-per-window and tokens-per-window pacing for one lane (one model, one tier).

    ``rpm`` / ``tpm`` come from flags; either may be None (unknown until a response's
    ``x-ratelimit-limit-*`` header tells us, unlimited until then). Limits are per ``window``
    seconds (60 for the per-minute limits providers publish). Standard and flex have separate
    limits on some providers, so the runner keeps one instance per lane.

    Use::

        wait = limiter.try_acquire(estimated_tokens, now)   # 0.0 -> send now (charged)
        ...                                                 # else sleep(wait) and try again
        limiter.settle_tokens(estimated_tokens, actual_tokens, now)   # after the response
        limiter.update_from_headers(response_headers, now)
        limiter.on_rate_limited(err.retry_after, now)       # on RateLimited
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, now: float = 0.0,
                 window: float = 60.0, default_pause: float = 1.0, max_pause: float = 300.0) -> None:
        if not window > 0:
            raise ValueError("window must be > 0")
        if not max_pause >= 0:
            raise ValueError("max_pause must be >= 0")
        self.window = float(window)
        self.default_pause = float(default_pause)
        #: Longest pause a server may impose (``retry-after``, ``x-ratelimit-reset-*``), like
        #: :attr:`~flextier.policy.backoff.Backoff.retry_after_cap` for a flex shed: one answer of
        #: ``retry-after: 99999999`` or ``reset: 99999h`` must not park the lane for years.
        self.max_pause = float(max_pause)
        #: How many server-imposed pauses were longer than ``max_pause`` and cut to it.
        self.capped = 0
        self.requests = self._bucket(rpm, now)
        self.tokens = self._bucket(tpm, now)
        # the user's own limits (--rpm/--tpm) are ceilings: a server's larger limit never lifts them
        self._ceiling = {"requests": rpm, "tokens": tpm}
        self._not_before = -math.inf

    def _bucket(self, limit: float | None, now: float) -> TokenBucket | None:
        if limit is None:
            return None
        if not limit > 0:
            raise ValueError(f"a rate limit must be > 0, got {limit!r}")
        return TokenBucket(limit / self.window, limit, now)

    def try_acquire(self, tokens: int, now: float) -> float:
        """Charge one request of ``tokens`` tokens and return 0.0, or charge nothing and
        return how many seconds to wait before trying again."""
        if now < self._not_before:
            return self._not_before - now
        charged: list[tuple[TokenBucket, float]] = []
        wait = 0.0
        for bucket, n in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is None:
                continue
            w = bucket.try_take(n, now)
            if w == 0.0:
                charged.append((bucket, n))
            wait = max(wait, w)
        if wait > 0:
            for bucket, n in charged:  # a refusal must cost nothing
                bucket.give_back(n, now)
        return wait

    @property
    def limited(self) -> bool:
        """True once a limit is known (a flag, or a server's ``x-ratelimit-limit-*``)."""
        return self.requests is not None or self.tokens is not None

    def not_before(self) -> float:
        """The clock value before which nothing may be sent (a 429's retry-after, a reset at 0)."""
        t = self._not_before
        for b in (self.requests, self.tokens):
            if b is not None:
                t = max(t, b._not_before)
        return t

    def grant(self, requests: int, tokens: int, now: float, *, max_share: float = 1.0) -> tuple[int, int, float]:
        """Take up to ``requests`` requests and ``tokens`` tokens at once, for a caller that spends
        them later (a Ray member's lease, flextier.ray.controller): ``(requests, tokens, wait)``.

        Why here: the cluster's RPM/TPM buckets are this class, fed by every member's
        ``x-ratelimit-*`` headers and 429s, so a job on many workers paces as one ``flextier run``.
        At most ``max_share`` of a bucket's capacity goes in one grant (at least one request's
        worth when it is there); nothing is granted when either bucket cannot give one request's
        worth (``tokens / requests``), and ``wait`` then says when to ask again.
        """
        if now < self.not_before():
            return 0, 0, self.not_before() - now
        requests = max(1, int(requests))
        per = max(0, int(tokens)) / requests
        n = requests
        if self.requests is not None:
            lvl = math.floor(self.requests.level(now))
            n = min(n, max(1, int(self.requests.capacity * max_share)), lvl)
        if self.tokens is not None and per > 0:
            lvl_t = self.tokens.level(now)
            if lvl_t >= per:
                n = min(n, int(min(lvl_t, max(per, self.tokens.capacity * max_share)) // per))
            else:  # an oversized request passes once the bucket is full (see TokenBucket.try_take)
                n = min(n, 1) if lvl_t >= self.tokens.capacity else 0
        if n <= 0:
            wait = 1e-3
            if self.requests is not None:
                wait = max(wait, (1 - self.requests.level(now)) / self.requests.rate)
            if self.tokens is not None and per > 0:
                wait = max(wait, (min(per, self.tokens.capacity) - self.tokens.level(now)) / self.tokens.rate)
            return 0, 0, wait
        t = int(math.ceil(n * per))
        if self.requests is not None:
            self.requests.give_back(-n, now)
        if self.tokens is not None:
            self.tokens.give_back(-t, now)
        return n, t, 0.0

    def settle_tokens(self, estimated: int, actual: int, now: float) -> None:
        """Correct the token bucket once the real token count of a request is known."""
        if self.tokens is not None:
            self.tokens.give_back(estimated - actual, now)

    def on_rate_limited(self, retry_after: float | None, now: float) -> None:
        """A :class:`RateLimited` came back: send nothing on this lane until the server allows."""
        pause = retry_after if retry_after is not None and retry_after > 0 else self.default_pause
        self._not_before = max(self._not_before, now + self._cap(pause))

    def _cap(self, pause: float) -> float:
        if not pause <= self.max_pause:  # also NaN
            self.capped += 1
            return self.max_pause
        return pause

    def update_from_headers(self, headers: Mapping[str, str], now: float) -> None:
        """Learn limits from OpenAI-style ``x-ratelimit-*`` headers (case-insensitive).

        ``limit-{requests,tokens}`` set the bucket size (per ``window``), never above the
        caller's own ``rpm``/``tpm``; ``remaining-*`` caps
        the level (the server counts requests we have not seen answered yet); when a remaining
        count is 0, ``reset-*`` (a duration such as ``"6m0s"``) pauses the lane until then
        (at most :attr:`max_pause`).
        Malformed values are ignored: a header must never crash a job.
        """
        h = {k.lower(): v for k, v in headers.items()}
        for kind in ("requests", "tokens"):
            limit = _num(h.get(f"x-ratelimit-limit-{kind}"))
            remaining = _num(h.get(f"x-ratelimit-remaining-{kind}"))
            reset = h.get(f"x-ratelimit-reset-{kind}")
            bucket = getattr(self, kind)
            ceiling = self._ceiling.get(kind)
            if limit is not None and ceiling is not None:
                limit = min(limit, ceiling)
            if limit is not None and limit > 0:
                if bucket is None:
                    bucket = TokenBucket(limit / self.window, limit, now)
                    setattr(self, kind, bucket)
                else:
                    bucket.reconfigure(limit / self.window, limit, now)
            if bucket is not None and remaining is not None:
                bucket.clamp(remaining, now)
                if remaining <= 0 and reset is not None:
                    try:
                        bucket.hold_until(now + self._cap(parse_duration(reset)))
                    except ValueError:
                        pass


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


__all__ = ["AimdConfig", "AimdController", "is_capacity_signal", "parse_duration", "TokenBucket",
           "RateLimiter"]
