"""CLI commands over the catalog: ``estimate``, ``models`` and ``advise``."""
from __future__ import annotations

import json
from datetime import datetime
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..advise import advise as _advise
from ..catalog import PROVIDERS, Catalog, default_catalog, load_catalog, set_default_catalog
from ..cost import fmt_usd
from ..estimate import estimate as _estimate
from ..errors import UserInputError
from ..timeparse import parse_deadline

PRICES_HELP = "Extra price file (JSON or TOML) layered over the built-in catalog; also FLEXTIER_PRICES."


def use_prices(prices: Optional[str]) -> Catalog:
    """Load the catalog with a user price file (if any) and make it the process default."""
    if prices:
        set_default_catalog(load_catalog(prices))
    return default_catalog()


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


# ``flextier models`` columns, and the order they go when the terminal is too narrow: the id
# is what users copy, so it is never cut; the yes/no columns repeat what "-" in a price says.
_MODEL_COLUMNS = ("model", "aliases", "flex", "batch", "standard", "flex price", "batch price", "read on")
_DROP_ORDER = ("aliases", "read on", "batch", "flex", "batch price", "standard", "flex price")


def models_table(entries: list, cell, console: Console | None = None) -> list:
    """The catalog table, fitted to the terminal: model ids whole, on one line, always.

    Every other column wraps at its spaces, never inside a word or number, so its narrowest
    is its longest word; columns are dropped (in ``_DROP_ORDER``) until those widths fit the
    terminal. Returns the renderables to print (the table and, when columns were dropped, a
    note saying which and where to find them).
    """
    console = console or Console()
    rows = [{"model": e.name, "aliases": ", ".join(e.aliases), "flex": "yes" if e.supports_flex else "no",
             "batch": "yes" if e.supports_batch else "no", "standard": cell(e, "standard"),
             "flex price": cell(e, "flex"), "batch price": cell(e, "batch"), "read on": e.source_date}
            for e in entries]

    def narrowest(col: str) -> int:
        if col == "model":  # one line, whole
            return max([len(r["model"]) for r in rows] + [len(col)])
        return max(len(w) for text in [col, *(r[col] for r in rows)] for w in (text.split() or [""]))

    shown = list(_MODEL_COLUMNS)
    need = lambda cols: sum(narrowest(c) + 2 for c in cols) + len(cols) + 1  # noqa: E731 (padding, borders)
    for col in _DROP_ORDER:
        if need(shown) <= console.width:
            break
        shown.remove(col)
    # fixed widths, computed here: every column gets its narrowest, and the room left goes to
    # the wrapping columns up to their natural width (Rich's own squeeze can overflow the terminal)
    widest = {c: max(len(x) for x in [c, *(r[c] for r in rows)]) for c in shown}
    width = {c: narrowest(c) for c in shown}
    room = console.width - need(shown)
    for group in ([c for c in shown if c not in ("aliases", "read on")], shown):  # prices grow first
        while room > 0 and any(width[c] < widest[c] for c in group):
            for c in group:  # a character at a time, round-robin, so the columns grow evenly
                if room > 0 and width[c] < widest[c]:
                    width[c] += 1
                    room -= 1
    t = Table(title="flextier catalog (USD per 1M tokens: input / cached / output)", title_justify="left",
              padding=(0, 1))
    for c in shown:
        if c == "model":
            t.add_column(c, no_wrap=True, width=width[c], overflow="ignore")
        else:
            t.add_column(c, width=width[c], overflow="fold")
    for r in rows:
        t.add_row(*(r[c] for c in shown))
    dropped = [c for c in _MODEL_COLUMNS if c not in shown]
    out: list = [t]
    if dropped:
        out.append(f"[dim]narrow terminal: {', '.join(dropped)} not shown ('-' = tier not offered); "
                   f"widen it or use --json[/dim]")
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def estimate(
        model: List[str] = typer.Option(..., "--model", "-m", help="provider/model-id or alias; repeat to compare"),
        calls: int = typer.Option(..., "--calls", help="number of calls"),
        input_tokens: int = typer.Option(..., "--input-tokens", help="input tokens per call"),
        output_tokens: int = typer.Option(..., "--output-tokens", help="output tokens per call (incl. reasoning)"),
        cached_fraction: float = typer.Option(0.0, "--cached-fraction", help="share of input tokens served from cache [0,1]"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        prices: Optional[str] = typer.Option(None, "--prices", help=PRICES_HELP),
    ) -> None:
        """What a workload costs at standard, flex and batch, and what flex saves."""
        cat = use_prices(prices)
        entries = [cat.resolve(m, field="--model") for m in model]
        all_rows = [(e, _estimate(e, calls, input_tokens, output_tokens, cached_fraction)) for e in entries]
        if as_json:
            out = {
                "workload": {"calls": calls, "input_tokens": input_tokens, "output_tokens": output_tokens,
                             "cached_fraction": cached_fraction},
                "catalog_read_on": cat.read_on,
                "models": [{"model": e.name, "source": e.source, "source_date": e.source_date,
                            "rows": [r.as_dict() for r in rows]} for e, rows in all_rows],
            }
            typer.echo(json.dumps(out, indent=2))
            return
        console = Console()
        console.print(f"{calls:,} calls x ({input_tokens:,} in + {output_tokens:,} out tokens)"
                      + (f", {cached_fraction:.0%} of input cached" if cached_fraction else ""))
        for e, rows in all_rows:
            # one table per model, titled by its id: ids are what users copy, so no column ever cuts them
            table = Table(title=e.name, title_justify="left", title_style="bold")
            for col in ("tier", "caching", "cost", "saved vs standard", "note"):
                if col == "note":  # the only column that wraps
                    table.add_column(col, overflow="fold", ratio=1)
                else:
                    table.add_column(col, no_wrap=True,
                                     justify="right" if col in ("cost", "saved vs standard") else "left")
            for r in rows:
                table.add_row(r.tier, "cached" if r.cached else "none",
                              fmt_usd(r.cost) if r.available else "n/a", _pct(r.saved_pct), r.note)
            console.print(table)
        for e, _ in all_rows:
            console.print(f"[dim]{e.name}: prices from {e.source} (read {e.source_date})[/dim]")

    @app.command()
    def models(
        provider: Optional[str] = typer.Option(None, "--provider", "-p", help="openai, gemini, bedrock or anthropic"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        prices: Optional[str] = typer.Option(None, "--prices", help=PRICES_HELP),
    ) -> None:
        """List models with their flex and batch support and prices (USD per 1M tokens)."""
        cat = use_prices(prices)
        if provider is not None and provider not in PROVIDERS:
            raise UserInputError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})", field="--provider")
        entries = cat.models(provider)

        def cell(e, tier):
            p = e.tier_prices(tier)
            if not e.supports(tier):
                return "-"
            if p is None:
                return "unknown"
            f = lambda v: "unknown" if v is None else f"{v.normalize():f}"  # noqa: E731
            return f"{f(p.input)} / {f(p.cached_input)} / {f(p.output)}"

        if as_json:
            typer.echo(json.dumps({"catalog_read_on": cat.read_on, "models": [e.as_dict() for e in entries]}, indent=2))
            return
        Console().print(*models_table(entries, cell))

    @app.command()
    def advise(
        model: str = typer.Option(..., "--model", "-m", help="provider/model-id or alias"),
        human_waiting: bool = typer.Option(False, "--human-waiting/--no-human-waiting",
                                           help="a person is waiting at a screen for the answer"),
        deadline: Optional[str] = typer.Option(None, "--deadline", help="e.g. 3h, 2d, 06:00, 2026-11-28T06:00"),
        chained: bool = typer.Option(False, "--chained/--independent", help="calls depend on each other's answers"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        prices: Optional[str] = typer.Option(None, "--prices", help=PRICES_HELP),
    ) -> None:
        """Standard, flex or batch for a workload, with a one-line reason."""
        cat = use_prices(prices)
        entry = cat.resolve(model, field="--model")
        deadline_s = None
        if deadline:
            now = datetime.now()
            deadline_s = (parse_deadline(deadline, now) - now).total_seconds()
        a = _advise(entry, human_waiting=human_waiting, deadline_s=deadline_s, chained=chained)
        if as_json:
            typer.echo(json.dumps({"model": entry.name, "tier": a.tier, "reason": a.reason}))
        else:
            typer.echo(f"{a.tier}: {a.reason}")
