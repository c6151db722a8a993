"""``flextier serve``: run the flex gateway (``flextier.gateway``), optionally in front of the emulator.

Everything is checked before a port is bound: the config (one line naming file, line and field,
exit 2), the host (a non-loopback host needs keys), the emulator profile. See README "Gateway".
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

import typer

from ..errors import UserInputError

__all__ = ["register", "report_gateway"]


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (non-loopback needs keys)."),
        port: int = typer.Option(8788, "--port", help="TCP port (0 = any free port)."),
        config: Optional[str] = typer.Option(None, "--config", help="gateway.toml: keys, upstreams, budgets."),
        emulate: Optional[str] = typer.Option(None, "--emulate", help="Run in front of the built-in emulator "
                                              "with this profile (calm | weekday | peak | outage | chaos)."),
        time_scale: float = typer.Option(1.0, "--time-scale", help="With --emulate: emulated seconds per wall second."),
        ledger: Optional[str] = typer.Option(None, "--ledger", help="SQLite ledger (default ./.flextier/gateway.db)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log one line per call (never keys)."),
    ) -> None:
        """Serve an OpenAI/Gemini/Anthropic-compatible gateway that sends every call flex-first."""
        from ..gateway.config import GatewayConfig, load_config
        from ..gateway.server import GatewayServer, check_bind

        cfg = load_config(config) if config else GatewayConfig()
        if not 0 <= port <= 65535:
            raise UserInputError("must be between 0 and 65535", field="--port")
        check_bind(host, cfg)
        if verbose:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
            logging.getLogger("flextier.gateway").setLevel(logging.INFO)
        emu = None
        policy = None
        if emulate is not None:
            from ..emulator import PROFILES, Emulator
            from ..policy.fallback import Policy

            if emulate not in PROFILES:
                raise UserInputError(f"unknown profile {emulate!r} (choose from {', '.join(PROFILES)})",
                                     field="--emulate")
            if not time_scale > 0:
                raise UserInputError("must be > 0", field="--time-scale")
            emu = Emulator(profile=emulate, time_scale=time_scale).start()
            cfg = replace(cfg, upstreams={**cfg.upstreams, **emu.base_urls()})
            policy = Policy(clock=emu.clock.now, sleep=emu.clock.sleep, asleep=emu.clock.asleep)
        try:
            srv = GatewayServer(cfg, host=host, port=port, ledger=ledger, policy=policy, emulated=emu is not None)
        except OSError as exc:
            raise UserInputError(f"cannot open the ledger: {exc}", field="--ledger") from None
        try:
            sock_probe = srv._bind()  # noqa: SLF001 - fail with one line before uvicorn starts
            sock_probe.close()
        except OSError as exc:
            if emu is not None:
                emu.stop()
            raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror}", field="--port") from None
        mode = f"{len(cfg.keys)} keys" if cfg.keys else "single-user (your own provider key is forwarded)"
        typer.echo(f"flextier gateway on {srv.url}  ({mode}; ledger {srv.ledger.path})")
        typer.echo(f"  OpenAI     OPENAI_BASE_URL={srv.url}/v1")
        typer.echo(f"  Gemini     base_url {srv.url}   Anthropic  base_url {srv.url}")
        typer.echo(f"  pages      {srv.url}/  {srv.url}/calculator   metrics {srv.url}/metrics")
        if emu is not None:
            typer.echo(f"  upstream   the built-in emulator ({emulate}) at {emu.url}")
        try:
            srv.run()
        except KeyboardInterrupt:
            pass
        finally:
            if emu is not None:
                emu.stop()


def report_gateway(ledger: Optional[str], since: str, html: Optional[str], as_json: bool) -> None:
    """``flextier report --gateway``: the gateway ledger's summary (text, JSON, or a self-contained HTML)."""
    import json
    import time
    from pathlib import Path

    from ..gateway.ledger import Ledger
    from ..gateway.pages import report_html
    from ..gateway.server import default_ledger_path
    from ..gateway.summary import format_summary, summarize
    from ..timeparse import parse_duration

    secs = parse_duration(since, field="--since")
    path = ledger or default_ledger_path()
    if not Path(path).exists():
        raise UserInputError(f"no gateway ledger at {path} (run `flextier serve` first, or pass --store)",
                             field="--store")
    now = time.time()
    with Ledger(path, create=False) as lg:
        s = summarize(lg.rows(now - secs), now - secs, now)
    typer.echo(json.dumps(s, indent=2) if as_json else format_summary(s))
    if html:
        Path(html).write_text(report_html(s), encoding="utf-8")
        typer.echo(f"report: {html}", err=as_json)
