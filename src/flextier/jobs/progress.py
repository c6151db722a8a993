"""Live progress of a running job: a Rich panel on a terminal, periodic log lines elsewhere.

Why two forms: a person watching a terminal wants one redrawn panel; CI logs, ``nohup``
and pipes want a plain line every so often that greps well and never floods the log.
Both read the same :class:`~flextier.jobs.runner.Stats` snapshot, and only on a timer:
the hot path never formats anything for display (bench/overhead.py measures runner overhead).

Shown: items done / total and the rate; the clock the job runs on (emulated time under
``--emulate``) and the elapsed time; the deadline, the estimated finish and the margin
(only once the rate has settled: the first answers take a whole flex latency, and an early
estimate read as a large negative margin); what is in flight, with the same number
``flextier status`` shows; counts per served tier; the planner's mode in words; errors;
money spent against the standard price of the same work ("unknown", never $0, when a
result came at a tier with no known price). A legend line explains the terse parts. The
box has a fixed width so it does not jump as numbers grow.
"""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from ..cost import fmt_usd
from .stats import Stats


def fmt_span(seconds: float | None) -> str:
    """``1h05m``, ``12m30s``, ``45s``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    neg = seconds < 0
    s = int(abs(seconds))
    if s >= 86400:
        out = f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    elif s >= 3600:
        out = f"{s // 3600}h{(s % 3600) // 60:02d}m"
    elif s >= 60:
        out = f"{s // 60}m{s % 60:02d}s"
    else:
        out = f"{s}s"
    return "-" + out if neg else out


def fmt_clock(ts: float | None, *, utc: bool, seconds: bool = False) -> str:
    """``11-24 14:05Z`` (UTC: the emulated clock) or local time; ``-`` for unknown."""
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(ts, tz=timezone.utc) if utc else datetime.fromtimestamp(ts).astimezone()
    return dt.strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M") + ("Z" if utc else "")


#: the planner's modes (policy/planner.py) in words a person watching the panel can act on
PLANNER_WORDS = {
    "flex-only": "flex only (no deadline, or --tier flex)",
    "standard-only": "standard only (--tier standard)",
    "batch-only": "provider batch only (--tier batch)",
    "batch": "provider batch: the deadline leaves room for it",
    "up": "pacing to the deadline: flex, plus standard only when behind",
    "standard": "standard: no flex for this model, too close for batch",
    "safety": "safety net: everything left goes to standard",
    "done": "done",
}
LEGEND = ("in flight: items this run holds (sent, or waiting to send or retry) · flex N of M: flex requests "
          "out / adaptive limit · margin: deadline minus estimated finish")
#: before this many results of this run (and SETTLE_S clock seconds), the rate is too young for an ETA
SETTLE_RESULTS = 20
SETTLE_S = 60.0


def rate_settled(s: Stats) -> bool:
    """Whether the finish estimate means anything yet.

    The first answers of a run arrive after a full flex latency (minutes), so an early rate
    reads far too low and the margin far too negative; wait for a few results and a minute.
    """
    k = s.finished - s.done_at_start
    left_at_start = max(1, s.total - s.done_at_start)
    young = k < min(SETTLE_RESULTS, max(1, left_at_start // 10)) or (s.now - s.started) < SETTLE_S
    return s.finished >= s.total or not young


def money_fields(spent: Any, standard: Any, unknown: int) -> dict[str, str]:
    """Spent, the standard price of the same work and the saving, as shown to people.

    A result served at a tier with no known price (a response claiming ``service_tier:
    priority`` on a model without a priority price) has an unknown cost: the total is then
    unknown too, and so is the saving; never $0.00, never "saved 100%".
    """
    if unknown:
        known = f" (known part {fmt_usd(spent)})" if spent else ""
        return {"spent": f"unknown{known}, {unknown} result{'s' if unknown != 1 else ''} with no known price",
                "standard": fmt_usd(standard) if standard else "unknown", "saved": "unknown"}
    saved = None if not standard else float((standard - spent) * 100 / standard)
    return {"spent": fmt_usd(spent), "standard": fmt_usd(standard),
            "saved": "-" if saved is None else f"{saved:.0f}%"}


def inflight_text(held: int, in_batch: int) -> str:
    """``in flight`` as both the panel and ``flextier status`` say it (same number, same words)."""
    return f"{held + in_batch:,}" + (f" ({in_batch:,} in provider batches)" if in_batch else "")


def resume_command(job: str, store_path: str | None = None) -> str:
    """The command that continues a stopped job (printed on Ctrl-C, SIGTERM and pause).

    ``store_path``: the job's store when it is not the default ``./.flextier/<job>.db``.
    """
    import shlex

    from .store import default_store_path

    cmd = f"flextier resume {shlex.quote(job)}"
    if store_path is not None:
        try:
            default = default_store_path(job).resolve() == Path(store_path).resolve()
        except OSError:
            default = False
        if not default:
            cmd += f" --store {shlex.quote(str(store_path))}"
    return cmd


def stopped_message(job: str, store_path: str | None = None, *, why: str = "interrupted") -> str:
    """One line for a stopped run: what happened and the command that resumes it."""
    return (f"flextier: {why}: finished results are saved and nothing done is sent again; "
            f"continue with: {resume_command(job, store_path)}")


def summary_fields(s: Stats, *, utc: bool = False) -> dict[str, str]:
    """The displayed values, as strings (shared by the panel and the log line)."""
    rate = s.rate()
    settled = rate_settled(s)
    eta = s.eta() if settled else None
    tiers = " ".join(f"{t}={n}" for t, n in sorted(s.by_tier.items())) or "-"
    share = s.flex_share
    errs = " ".join(f"{k}={v}" for k, v in s.errors.most_common(4)) or "none"
    f = {
        "done": f"{s.finished}/{s.total}" + (f" ({s.failed} failed)" if s.failed else ""),
        "rate": "-" if rate is None else f"{rate * 60:.1f}/min",
        "tiers": tiers,
        "flex_share": "-" if share is None else f"{share * 100:.0f}%",
        "flex": f"{s.flex_inflight}/{s.flex_limit}",
        "flex_words": f"flex {s.flex_inflight} of {s.flex_limit}",
        "standard_inflight": str(s.std_inflight),
        "in_batch": f"{s.in_batch:,}",
        "inflight": inflight_text(getattr(s, "held", 0), s.in_batch),
        "errors": errs,
        **money_fields(s.spent, s.standard_cost, getattr(s, "unknown_cost", 0)),
        "eta": fmt_clock(eta, utc=utc) if settled else "settling",
        "deadline": fmt_clock(s.deadline, utc=utc) if s.deadline else "none",
        "mode": s.mode or "-",
        "planner": PLANNER_WORDS.get(s.mode, s.mode or "-"),
        "clock": fmt_clock(s.now, utc=utc, seconds=True) if s.now else "-",
        "elapsed": fmt_span(s.now - s.started) if s.now and s.started else "-",
    }
    if s.deadline and eta is not None:
        f["margin"] = fmt_span(s.deadline - eta)
    elif s.deadline and not settled:
        f["margin"] = f"settling ({s.finished - s.done_at_start} results so far)"
    else:
        f["margin"] = "-"
    return f


def log_line(s: Stats, *, utc: bool = False) -> str:
    """One grep-friendly progress line."""
    f = summary_fields(s, utc=utc)
    batch = f", in batch {f['in_batch']}" if s.in_batch else ""
    return (f"flextier: {f['done']} done, {f['rate']}, tiers {f['tiers']}, flex share {f['flex_share']}, "
            f"in flight {f['inflight']}: flex {f['flex']} (out/limit), standard {f['standard_inflight']} out{batch}, "
            f"errors {f['errors']}, spent {f['spent']} vs {f['standard']} at standard (saved {f['saved']}), "
            f"clock {f['clock']} elapsed {f['elapsed']}, eta {f['eta']} deadline {f['deadline']} "
            f"(margin {f['margin']}), planner {f['mode']}")


class Progress:
    """Refreshes a display from ``snapshot()`` until stopped. Never raises into the job."""

    def __init__(self, snapshot: Callable[[], Stats], *, stream: TextIO | None = None, live: bool | None = None,
                 quiet: bool = False, interval: float | None = None, utc: bool = False, title: str = "",
                 lag: Any = None) -> None:
        self.snapshot = snapshot
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if live is None else live) and not quiet
        self.quiet = quiet
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self.utc = utc
        self.title = title
        self._task: asyncio.Task[Any] | None = None
        self._live: Any = None
        self.lag = lag  # a clocklag.LagMonitor: runs even when quiet (the summary reports it)
        self._width = self.WIDTH

    #: the panel's width: fixed (or the terminal's, when narrower) so the box does not jump
    WIDTH = 100

    def _panel(self, width: int | None = None) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        s = self.snapshot()
        f = summary_fields(s, utc=self.utc)
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", width=9, no_wrap=True)
        t.add_column(overflow="fold")
        pct = (s.finished / s.total * 100) if s.total else 100.0
        bar_w = 30
        fill = int(bar_w * pct / 100)
        bar = f"[green]{'█' * fill}[/green]{'░' * (bar_w - fill)}"
        t.add_row("done", f"{bar} {f['done']} ({pct:.0f}%)  {f['rate']}")
        scale = getattr(self.lag, "time_scale", 1.0) if self.lag is not None else 1.0
        where = (f"emulated, x{scale:g}" if scale != 1 else "emulated") if self.utc else "local"
        t.add_row("clock", f"{f['clock']} ({where})   elapsed {f['elapsed']}")
        t.add_row("deadline", f"{f['deadline']}   finish est. {f['eta']}   margin {f['margin']}")
        t.add_row("in flight", f"{f['inflight']}: requests out {f['flex_words']} allowed, "
                               f"standard {f['standard_inflight']}")
        t.add_row("served", f"{f['tiers']}   flex share {f['flex_share']}")
        t.add_row("planner", f"{f['planner']} [dim]({f['mode']})[/dim]")
        t.add_row("errors", f["errors"])
        t.add_row("money", f"spent {f['spent']}   vs {f['standard']} at standard   saved {f['saved']}")
        if s.paused:
            t.add_row("paused", f"[yellow]{s.paused}[/yellow]")
        t.add_row("", f"[dim]{LEGEND}[/dim]")
        return Panel(t, title=self.title or "flextier run", title_align="left", width=width or self.WIDTH)

    async def _loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.refresh()
        except asyncio.CancelledError:
            pass

    def refresh(self) -> None:
        try:
            if self.live and self._live is not None:
                self._live.update(self._panel(self._width))
            elif not self.quiet:
                print(log_line(self.snapshot(), utc=self.utc), file=self.stream, flush=True)
        except Exception:  # display must never break a job
            pass

    def start(self) -> None:
        if self.lag is not None:
            self.lag.start()
        if self.quiet:
            return
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._width = min(self.WIDTH, console.width)
            self._live = Live(self._panel(self._width), console=console, refresh_per_second=4, transient=False)
            self._live.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._live is not None:
            try:
                self._live.update(self._panel(self._width))
                self._live.stop()
            except Exception:
                pass
        elif not self.quiet:
            self.refresh()


__all__ = ["Progress", "log_line", "summary_fields", "fmt_span", "fmt_clock", "money_fields", "inflight_text",
           "resume_command", "stopped_message", "rate_settled", "PLANNER_WORDS", "LEGEND"]
