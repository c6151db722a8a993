"""Live progress of a running job: a Rich panel on a terminal, periodic log lines elsewhere.

Why two forms: a person watching a terminal wants one redrawn panel; CI logs, ``nohup``
and pipes want a plain line every so often that greps well and never floods the log.
Both read the same :class:`~flextier.jobs.runner.Stats` snapshot, and only on a timer:
the hot path never formats anything for display (issue 6 measures runner overhead).

Shown: items done / total and the rate, counts per served tier and the flex share, the
flex window (in flight / AIMD limit), items inside provider batches (when there are any),
errors by class, money spent against the standard price of the same work and the % saved,
and the ETA against the deadline.
"""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

from ..cost import fmt_usd
from .runner import Stats


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


def fmt_clock(ts: float | None, *, utc: bool) -> str:
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(ts, tz=timezone.utc) if utc else datetime.fromtimestamp(ts).astimezone()
    return dt.strftime("%m-%d %H:%M") + ("Z" if utc else "")


def summary_fields(s: Stats, *, utc: bool = False) -> dict[str, str]:
    """The displayed values, as strings (shared by the panel and the log line)."""
    rate = s.rate()
    eta = s.eta()
    tiers = " ".join(f"{t}={n}" for t, n in sorted(s.by_tier.items())) or "-"
    share = s.flex_share
    errs = " ".join(f"{k}={v}" for k, v in s.errors.most_common(4)) or "none"
    saved = s.saved_pct
    f = {
        "done": f"{s.finished}/{s.total}" + (f" ({s.failed} failed)" if s.failed else ""),
        "rate": "-" if rate is None else f"{rate * 60:.1f}/min",
        "tiers": tiers,
        "flex_share": "-" if share is None else f"{share * 100:.0f}%",
        "flex": f"{s.flex_inflight}/{s.flex_limit}",
        "standard_inflight": str(s.std_inflight),
        "in_batch": f"{s.in_batch:,}",
        "errors": errs,
        "spent": fmt_usd(s.spent),
        "standard": fmt_usd(s.standard_cost),
        "saved": "-" if saved is None else f"{saved:.0f}%",
        "eta": fmt_clock(eta, utc=utc),
        "deadline": fmt_clock(s.deadline, utc=utc) if s.deadline else "none",
        "mode": s.mode or "-",
    }
    if s.deadline and eta is not None:
        f["margin"] = fmt_span(s.deadline - eta)
    else:
        f["margin"] = "-"
    return f


def log_line(s: Stats, *, utc: bool = False) -> str:
    """One grep-friendly progress line."""
    f = summary_fields(s, utc=utc)
    batch = f", in batch {f['in_batch']}" if s.in_batch else ""
    return (f"flextier: {f['done']} done, {f['rate']}, tiers {f['tiers']}, flex share {f['flex_share']}, "
            f"flex {f['flex']} in flight, standard {f['standard_inflight']} in flight{batch}, errors {f['errors']}, "
            f"spent {f['spent']} vs {f['standard']} at standard (saved {f['saved']}), "
            f"eta {f['eta']} deadline {f['deadline']} (margin {f['margin']}), planner {f['mode']}")


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

    def _panel(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        s = self.snapshot()
        f = summary_fields(s, utc=self.utc)
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        pct = (s.finished / s.total * 100) if s.total else 100.0
        bar_w = 30
        fill = int(bar_w * pct / 100)
        t.add_row("done", f"[green]{'█' * fill}[/green]{'░' * (bar_w - fill)} {f['done']} ({pct:.0f}%)  {f['rate']}")
        t.add_row("tiers", f"{f['tiers']}   flex share {f['flex_share']}")
        batch = f"   in batch {f['in_batch']}" if s.in_batch else ""
        t.add_row("in flight", f"flex {f['flex']}   standard {f['standard_inflight']}{batch}   planner {f['mode']}")
        t.add_row("errors", f["errors"])
        t.add_row("money", f"spent {f['spent']}  vs {f['standard']} at standard   saved {f['saved']}")
        t.add_row("time", f"eta {f['eta']}   deadline {f['deadline']}   margin {f['margin']}")
        if s.paused:
            t.add_row("paused", f"[yellow]{s.paused}[/yellow]")
        return Panel(t, title=self.title or "flextier run", expand=False)

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
                self._live.update(self._panel())
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

            self._live = Live(self._panel(), console=Console(file=self.stream), refresh_per_second=4,
                              transient=False)
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
                self._live.update(self._panel())
                self._live.stop()
            except Exception:
                pass
        elif not self.quiet:
            self.refresh()


__all__ = ["Progress", "log_line", "summary_fields", "fmt_span", "fmt_clock"]
