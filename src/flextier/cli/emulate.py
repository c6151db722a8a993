"""``flextier emulate``: run the provider emulator in the foreground.

Prints the four base URLs, then serves until interrupted. Knobs come from the
profile, an optional JSON profile file, and repeated ``--knob k=v`` (in that order).
"""
from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import UserInputError


def _pairs(values: Optional[List[str]], field: str) -> dict[str, str]:
    """``name=value`` flags (``--knob``, ``--batch-knob``) as a dict; a malformed one is a user error."""
    out: dict[str, str] = {}
    for kv in values or []:
        name, sep, value = kv.partition("=")
        if not sep or not name.strip():
            raise UserInputError(f"expected name=value, got {kv!r}", field=field)
        out[name.strip()] = value.strip()
    return out


def register(app: typer.Typer) -> None:
    @app.command("emulate")
    def emulate(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8787, "--port", help="TCP port (0 = any free port)."),
        profile: str = typer.Option("calm", "--profile", help="calm | weekday | peak | outage | chaos"),
        seed: int = typer.Option(0, "--seed", help="Seed for load bursts, sheds, faults and text."),
        time_scale: float = typer.Option(1.0, "--time-scale", help="Emulated seconds per wall second."),
        start: str = typer.Option("2026-11-24T15:00", "--start", help="Emulated start time (ISO, UTC if naive)."),
        knob: Optional[List[str]] = typer.Option(None, "--knob", help="Override a knob: name=value (repeatable)."),
        profile_file: Optional[str] = typer.Option(None, "--profile-file", help="JSON file of knobs."),
        batch_knob: Optional[List[str]] = typer.Option(
            None, "--batch-knob", help="Override a batch-tier knob: name=value (repeatable; e.g. stall_at=0.5, "
                                       "parallelism=0.01, s3_endpoint_url=URL). Also POST /_emulator/batch."),
    ) -> None:
        """Run a local OpenAI/Gemini/Bedrock/Anthropic emulator with flex-tier behaviour."""
        from ..emulator import PROFILES, Emulator, KnobError
        from ..emulator.clock import parse_start

        if profile not in PROFILES:
            raise UserInputError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})",
                                 field="--profile")
        if not time_scale > 0:
            raise UserInputError("must be > 0", field="--time-scale")
        if not 0 <= port <= 65535:
            raise UserInputError("must be between 0 and 65535", field="--port")
        try:
            parse_start(start)
        except ValueError as exc:
            raise UserInputError(str(exc), field="--start") from None
        overrides = _pairs(knob, "--knob")
        from ..emulator.batch_core import BatchKnobs, batch_engine

        batch_overrides = _pairs(batch_knob, "--batch-knob")
        try:
            batch_knobs = BatchKnobs().replace(**batch_overrides)
        except ValueError as exc:
            raise UserInputError(str(exc), field="--batch-knob") from None
        try:
            emu = Emulator(profile=profile, seed=seed, time_scale=time_scale, start=start, host=host, port=port,
                           profile_file=profile_file, **overrides)
        except KnobError as exc:
            fld = "--profile-file" if exc.knob == "profile_file" else "--knob"
            raise UserInputError(str(exc), field=fld) from None
        try:
            emu.start()
        except OSError as exc:
            raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror}", field="--port") from None
        if batch_overrides:
            batch_engine(emu.engine).knobs = batch_knobs
        typer.echo(f"flextier emulator: profile={emu.profile} seed={seed} time_scale={time_scale:g} "
                   f"start={emu.clock.isoformat()}")
        typer.echo(f"  OpenAI     base_url      {emu.openai_base_url}")
        typer.echo(f"  Gemini     base_url      {emu.gemini_base_url}  (api version v1beta)")
        typer.echo(f"  Bedrock    endpoint_url  {emu.bedrock_endpoint_url}")
        typer.echo(f"  S3         endpoint_url  {emu.s3_endpoint_url}  (path-style; Bedrock batch input/output)")
        typer.echo(f"  Anthropic  base_url      {emu.anthropic_base_url}")
        typer.echo(f"  control    {emu.url}/_emulator/{{ledger,stats,profile,clock,batch}}   (Ctrl-C to stop)")
        try:
            emu.wait()
        except KeyboardInterrupt:
            pass
        finally:
            emu.stop()
