"""DeepSeek's clock in the catalog, the estimate and the planner (pure units)."""
from __future__ import annotations

import datetime as dt
import json

from flextier.catalog import default_catalog
from flextier.cli import main
from flextier.cost import clock_tier
from flextier.policy.planner import OFFPEAK_WAIT, SAFETY, STANDARD, Observation, Planner, PlannerConfig


def _t(day: int, h: int, m: int = 0) -> float:
    return dt.datetime(2026, 11, day, h, m, tzinfo=dt.timezone.utc).timestamp()


def test_peak_windows_and_price_tier() -> None:
    e = default_catalog().resolve("deepseek/deepseek-v4-flash")
    assert e.peak_hours is not None and e.source_date and e.peak_hours.source_date == "2026-08-16"
    assert e.tier_prices("offpeak").output * 2 == e.tier_prices("standard").output
    assert clock_tier(e, _t(24, 7)) == "standard" and clock_tier(e, _t(24, 10)) == "offpeak"   # Tue
    assert clock_tier(e, _t(24, 4, 59)) == "offpeak" and clock_tier(e, _t(24, 1)) == "standard"
    assert clock_tier(e, _t(28, 7)) == "offpeak"                                                # Saturday
    assert e.peak_hours.next_change(_t(24, 7)) == _t(24, 10)
    other = default_catalog().resolve("openai/gpt-5.4-mini")
    assert clock_tier(other, _t(24, 10)) == "standard"


def test_estimate_shows_peak_and_off_peak_rows(capsys) -> None:
    assert main(["estimate", "--model", "deepseek/deepseek-v4-flash", "--calls", "1000", "--input-tokens", "1000",
                 "--output-tokens", "500", "--json"]) == 0
    rows = {r["tier"]: r for r in json.loads(capsys.readouterr().out)["models"][0]["rows"]}
    assert rows["standard"]["cost_usd_exact"] == "1.1" and "peak" in rows["standard"]["note"]
    assert rows["offpeak"]["cost_usd_exact"] == "0.55" and rows["offpeak"]["saved_pct"] == 50.0


def test_planner_waits_for_off_peak_only_while_the_deadline_allows() -> None:
    ph = default_catalog().resolve("deepseek/deepseek-v4-flash").peak_hours
    t0 = _t(24, 7)

    def planner(hours: float) -> Planner:
        return Planner(PlannerConfig(t0=t0, total=100, deadline=t0 + hours * 3600, model_has_flex=False,
                                     model_has_batch=False, peak_hours=ph, standard_rate=1.0))

    p = planner(12)
    d = p.decide(Observation(now=t0, done=0, pending=100))
    assert d.mode == OFFPEAK_WAIT and d.wait_until == _t(24, 10) and not d.standard_all and d.standard_rate == 0
    d = p.decide(Observation(now=_t(24, 10), done=0, pending=100))
    assert d.mode == STANDARD and d.standard_all
    d = planner(1).decide(Observation(now=t0, done=0, pending=100))
    assert d.mode == STANDARD and d.standard_all and "peak price" in d.reason
    # 3 h 10 min: waiting until 10:00 leaves 10 min, more than 100 items at 1/s plus the reserve: it waits
    p = planner(3 + 10 / 60)
    assert p.decide(Observation(now=t0, done=0, pending=100)).mode == OFFPEAK_WAIT
    # ... but the job grows to 1000 items: waiting would no longer fit, so standard starts at once
    d = p.decide(Observation(now=t0 + 60, done=0, pending=1000, total=1000))
    assert d.mode in (STANDARD, SAFETY) and d.standard_all
