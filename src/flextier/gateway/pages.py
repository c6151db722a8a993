"""The pages for people: ``GET /`` (dashboard), ``GET /calculator``, and their JSON.

Why these choices: both pages are single self-contained HTML files (they work offline, behind
a firewall, saved to disk): the charting library is inlined, not fetched. The library is
Chart.js 4 (MIT; its UMD build is vendored in ``gateway/static/chart.umd.min.js`` with its
licence): one well-kept file (~200 KB) that draws the stacked bars, lines and grouped bars
both pages need on a canvas, with tooltips and live updates, which hand-drawn SVG would have
to reimplement. The dashboard polls ``/api/summary`` every few seconds; the calculator asks
``/api/estimate``, which runs :func:`flextier.estimate.estimate` (the code behind
``flextier estimate``) and formats money with :func:`flextier.cost.fmt_usd`, so the page and
the CLI always show the same numbers. ``flextier report --gateway --html`` writes the dashboard
with its data embedded (no server needed).
"""
from __future__ import annotations

import functools
import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Mapping

from ..catalog import Catalog
from ..cost import fmt_usd
from ..estimate import estimate
from ..errors import UserInputError
from ..timeparse import parse_duration
from .summary import summarize

if TYPE_CHECKING:
    from .service import Gateway

__all__ = ["dashboard_page", "calculator_page", "summary", "estimate_json", "report_html", "DEFAULT_CALC"]

#: the seed article's example: 50,000 calls x (2,000 in, 1,000 out) on Gemini 3 Flash and 3.1 Pro
DEFAULT_CALC = {"models": ["gemini/gemini-3-flash", "gemini/gemini-3.1-pro"], "calls": 50000, "input": 2000,
                "output": 1000, "cached": 0.0}


@functools.lru_cache(maxsize=None)
def _static(name: str) -> str:
    return resources.files("flextier.gateway").joinpath("static", name).read_text(encoding="utf-8")


def _fill(template: str, **parts: str) -> str:
    out = _static(template).replace("/*CHARTJS*/", _static("chart.umd.min.js").replace("</script", "<\\/script"))
    for k, v in parts.items():
        out = out.replace(f"__{k}__", v)
    return out


def _json_for_html(obj: Any) -> str:
    return json.dumps(obj).replace("</", "<\\/")


def dashboard_page(embedded: dict[str, Any] | None = None) -> str:
    """The dashboard; with ``embedded`` data it is a static report (no polling)."""
    return _fill("dashboard.html", DATA=_json_for_html(embedded) if embedded is not None else "null")


@functools.lru_cache(maxsize=8)
def _calc_page(models_json: str, defaults_json: str) -> str:
    return _fill("calculator.html", MODELS=models_json, DEFAULTS=defaults_json)


def calculator_page(catalog: Catalog) -> str:
    models = [{"name": e.name, "flex": e.supports("flex"), "batch": e.supports("batch")} for e in catalog]
    defaults = dict(DEFAULT_CALC)
    picked = []
    for n in DEFAULT_CALC["models"]:
        try:
            picked.append(catalog.resolve(n).name)   # aliases -> the option values (catalog names)
        except UserInputError:
            continue
    defaults["models"] = picked
    return _calc_page(_json_for_html(models), _json_for_html(defaults))


def summary(gw: "Gateway", since: str) -> dict[str, Any]:
    try:
        secs = parse_duration(since, field="since")
    except UserInputError as e:
        raise ValueError(e.one_line()) from None
    now = time.time()
    gw.ledger.flush()
    s = summarize(gw.ledger.rows(now - secs), now - secs, now)
    s["budgets"] = {k.name: gw.budgets.snapshot(k.name) for k in gw.cfg.keys}
    s["in_flight"] = gw.in_flight
    return s


def report_html(s: dict[str, Any]) -> str:
    return dashboard_page(s)


def estimate_json(catalog: Catalog, q: Mapping[str, str]) -> dict[str, Any]:
    """``/api/estimate?model=A&model=B&calls=&input=&output=&cached=``: the rows of ``flextier estimate``."""
    names = q.getlist("model") if hasattr(q, "getlist") else [q["model"]]  # type: ignore[attr-defined]
    if not names:
        raise ValueError("model: pick at least one model")
    try:
        calls, inp, out = int(q.get("calls", "0")), int(q.get("input", "0")), int(q.get("output", "0"))
        cached = float(q.get("cached", "0"))
    except ValueError:
        raise ValueError("calls, input and output must be whole numbers; cached a fraction") from None
    res = []
    for n in names:
        try:
            entry = catalog.resolve(n)
            rows = estimate(entry, calls, inp, out, cached)
        except UserInputError as e:
            raise ValueError(e.one_line()) from None
        res.append({"model": entry.name, "rows": [{**r.as_dict(), "cost_fmt": fmt_usd(r.cost)} for r in rows]})
    return {"calls": calls, "input": inp, "output": out, "cached": cached, "models": res}
