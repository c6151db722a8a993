"""CLI commands of the runner: ``run``, ``resume``, ``status`` and ``report``.

A thin layer: flags are checked and turned into :class:`~flextier.jobs.runner.RunOptions`,
the store is opened (or resumed) by :func:`flextier.jobs.api.open_job`, and the engine
does the rest. Every bad flag or input raises :class:`UserInputError` naming the flag, so
``flextier`` prints one line and exits 2 before anything is sent.

Exit codes (and their precedence when several apply) live in :mod:`flextier.jobs.exitcodes`:
0 done, 1 some items failed, 2 bad input, 3 paused, 4 deadline missed, 130 stopped by Ctrl-C
(SIGINT), 143 stopped by SIGTERM: the job is "stopped" and resumable, after a bounded wait
for the requests in flight (``--drain-timeout``, see :mod:`flextier.jobs.signals`).

One owner per job: the run takes the job's lock (:mod:`flextier.jobs.lock`) before it reads
or writes the store, and the results file's lock and ownership check
(:mod:`flextier.jobs.output`) before anything is sent.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import UserInputError

EXIT_FAILED_ITEMS = 1
EXIT_PAUSED = 3

EMULATED_START = "2026-11-24T14:00"


@dataclass
class RunArgs:
    """Flags of ``run`` / ``resume`` after Typer, before validation."""

    file: Optional[str] = None
    model: Optional[str] = None
    deadline: Optional[str] = None
    tier: Optional[str] = None
    out: Optional[str] = None
    job: Optional[str] = None
    store: Optional[str] = None
    concurrency: Optional[int] = None
    standard_concurrency: Optional[int] = None
    rpm: Optional[float] = None
    tpm: Optional[float] = None
    max_cost: Optional[str] = None
    ordered: Optional[bool] = None
    skip_invalid: bool = False
    prompt_template: Optional[str] = None
    emulate: Optional[str] = None
    time_scale: Optional[float] = None
    base_url: Optional[str] = None
    prices: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    quiet: bool = False
    retry_failed: bool = False
    html: Optional[str] = None
    seed: Optional[int] = None
    allow_empty: bool = False
    batch_s3_uri: Optional[str] = None
    batch_role_arn: Optional[str] = None
    batch_s3_endpoint: Optional[str] = None     # set by execute: the emulator's S3 when emulating
    drain_timeout: Optional[float] = None
    not_before: Optional[str] = None
    start: Optional[str] = None
    ray: Optional[str] = None              # --ray auto|ADDRESS: run on a Ray cluster (cli/ray_run.py)
    ray_workers: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def find_store(job: str, store: Optional[str] = None) -> Path:
    """The store of ``job``: ``--store``, a store path, the name ``run`` printed, the input file, or a unique stem."""
    from ..jobs.identity import find_store_by_name

    if store:
        p = Path(store)
        if not p.exists():
            raise UserInputError(f"no job store at {p} (start the job with `flextier run FILE`)", field="--store")
        return p
    return find_store_by_name(job)


@contextlib.contextmanager
def _reading(path: Path) -> Any:
    """``status``/``report``: a damaged store is one line naming it (exit 2), never a traceback."""
    import sqlite3

    from ..jobs.store import store_failure

    try:
        yield
    except sqlite3.DatabaseError as exc:
        err = store_failure(exc, path)
        if err is None:
            raise
        raise err from None


def _quiet_libraries() -> None:
    for name in ("httpx", "httpx2", "openai", "anthropic", "google_genai", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    level = os.environ.get("FLEXTIER_LOG", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), stream=sys.stderr,
                        format="flextier: %(message)s")


_ROLE_ARN = re.compile(r"^arn:aws(-[a-z-]+)?:iam::[0-9]{12}:role/[\w+=,.@/-]+$")


def _check_bedrock_batch(s3_uri: Optional[str], role_arn: Optional[str]) -> None:
    """The Bedrock batch flags come as a pair and are checked before anything is created or sent."""
    if not s3_uri:
        raise UserInputError("Bedrock batch jobs also need --batch-s3-uri s3://BUCKET/PREFIX (where the job's "
                             "input and output live)", field="--batch-s3-uri")
    if not role_arn:
        raise UserInputError("Bedrock batch jobs also need --batch-role-arn ARN (a role Bedrock can assume to read "
                             "and write that S3 location)", field="--batch-role-arn")
    if not s3_uri.startswith("s3://") or not s3_uri[5:].split("/", 1)[0]:
        raise UserInputError(f"expected s3://BUCKET/PREFIX, got {s3_uri!r}", field="--batch-s3-uri")
    if not _ROLE_ARN.match(role_arn):
        raise UserInputError(f"expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), got {role_arn!r}",
                             field="--batch-role-arn")


def _offline_s3(stack: contextlib.ExitStack, a: RunArgs, s3_url: str, *, emu: Any) -> None:
    """Against an emulator, offline means offline: every client flextier builds must be
    on loopback, and the Bedrock batch lane's S3 is the emulator's own (``--emulate``: with the
    job's bucket created in it; ``--base-url``: unless boto3 is pointed elsewhere on purpose)."""
    from .._loopback import offline

    stack.enter_context(offline("--emulate" if emu is not None else "--base-url (a flextier emulator)"))
    if emu is None and (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")):
        return
    a.batch_s3_endpoint = s3_url
    if emu is not None and a.batch_s3_uri and a.batch_s3_uri.startswith("s3://"):
        from ..emulator.s3 import S3Error

        try:
            emu.s3.create_bucket(a.batch_s3_uri[5:].split("/", 1)[0])
        except S3Error as exc:
            raise UserInputError(f"{exc.message} ({a.batch_s3_uri!r})", field="--batch-s3-uri") from None


def _check_positive(name: str, v: Optional[float], *, integer: bool = False) -> None:
    if v is None:
        return
    if v <= 0 or (integer and int(v) != v):
        raise UserInputError("must be a positive " + ("integer" if integer else "number"), field=name)


# --------------------------------------------------------------------------------------
# run / resume
# --------------------------------------------------------------------------------------

def execute(a: RunArgs, *, resume_job: Optional[str] = None) -> int:
    """Validate, open or resume the job, run it, print the summary. Returns the exit code.

    A full disk pauses the job (one line, exit 3); a damaged store is one line naming it
    (exit 2). Neither prints a traceback, and nothing committed is lost.
    """
    import sqlite3

    from ..jobs.store import NoSpace, store_failure

    try:
        return _execute(a, resume_job=resume_job)
    except (sqlite3.DatabaseError, OSError, NoSpace) as exc:
        err = exc if isinstance(exc, NoSpace) else store_failure(exc, a.store or "the job store")
        if err is None:
            raise
        if isinstance(err, NoSpace):
            _err(f"flextier: paused: {err}")
            return EXIT_PAUSED
        raise err from None


def _execute(a: RunArgs, *, resume_job: Optional[str] = None) -> int:
    """The job's lock is released however the run ends (the store's close releases it too)."""
    held: list[Any] = []
    try:
        return _execute_locked(a, resume_job, held)
    finally:
        for lk in held:
            lk.release()


def _execute_locked(a: RunArgs, resume_job: Optional[str], held: list[Any]) -> int:
    from ..catalog import default_catalog, load_catalog, set_default_catalog
    from ..jobs.api import TIER_CHOICES, open_job, parse_deadline, parse_money
    from ..jobs.identity import check_job_name, identify_input
    from ..jobs.input import BodyNotes, InvalidInput, iter_input
    from ..jobs.lock import JobLock
    from ..jobs.output import OutputSink, check_out_path
    from ..jobs.session import apply_resume_settings
    from ..jobs.store import JobStore, default_store_path, redact_url
    from ..policy.budget import require_known_prices

    def take_lock(path: Path) -> JobLock:
        lk = JobLock(path).acquire()
        held.append(lk)
        return lk

    _quiet_libraries()
    if a.prices:
        set_default_catalog(load_catalog(a.prices))

    stored: dict[str, Any] = {}
    ident = None
    lock = None
    if resume_job is not None:
        path = find_store(resume_job, a.store)
        lock = take_lock(path)  # before reading: another live runner is refused here (one line, PID)
        with JobStore(path, create=False) as s:
            job = s.job()
        if job is None:
            raise UserInputError(f"{path} holds no job", field="JOB")
        stored = job
        apply_resume_settings(a, job, path)

    user_store = a.store   # --store as given (a --ray job's state directory)
    if not a.file:
        raise UserInputError("give the job file", field="FILE")
    if resume_job is None:
        # a new or rerun job: the file must exist (a missing one never finds another job's store), and
        # its resolved path and content name the job (jobs/identity.py)
        ident = identify_input(a.file)
        if a.job is not None:
            check_job_name(a.job)
    if not a.model:
        raise UserInputError("is required (e.g. --model openai/gpt-5.4-mini)", field="--model")
    entry = default_catalog().resolve(a.model, field="--model")
    tier = (a.tier or "auto").lower()
    if tier not in TIER_CHOICES:
        raise UserInputError(f"must be one of {', '.join(TIER_CHOICES)}, got {a.tier!r}", field="--tier")
    if tier == "batch":
        if not entry.supports_batch:
            raise UserInputError(f"{entry.name} has no batch tier; use --tier auto, flex or standard", field="--tier")
        if a.max_cost is not None:
            raise UserInputError("a batch cannot be held to a spending cap item by item; drop --max-cost or use "
                                 "--tier auto", field="--tier")
        if entry.provider == "bedrock" and not (a.batch_s3_uri and a.batch_role_arn):
            raise UserInputError("Bedrock batch jobs read and write S3: give --batch-s3-uri s3://BUCKET/PREFIX and "
                                 "--batch-role-arn ARN", field="--tier")
    if entry.provider == "bedrock" and (a.batch_s3_uri or a.batch_role_arn):
        _check_bedrock_batch(a.batch_s3_uri, a.batch_role_arn)
    if tier == "flex" and not entry.supports_flex:
        raise UserInputError(f"{entry.name} has no flex tier; use --tier auto or --tier standard", field="--tier")
    from .ray_run import check_ray_flags

    check_ray_flags(a, tier=tier, resume=resume_job is not None)
    concurrency = int(a.concurrency if a.concurrency is not None else 256)
    _check_positive("--concurrency", concurrency, integer=True)
    _check_positive("--standard-concurrency", a.standard_concurrency, integer=True)
    _check_positive("--rpm", a.rpm)
    _check_positive("--tpm", a.tpm)
    _check_positive("--max-tokens", a.max_tokens, integer=True)
    _check_positive("--time-scale", a.time_scale)
    if a.drain_timeout is not None and not 0 <= a.drain_timeout <= 86400:
        raise UserInputError(f"must be between 0 and 86400 seconds, got {a.drain_timeout:g}", field="--drain-timeout")
    if a.temperature is not None and not 0 <= a.temperature <= 2:
        raise UserInputError("must be between 0 and 2", field="--temperature")
    cap = parse_money(a.max_cost) if a.max_cost is not None else None
    if cap is not None:
        # No --max-tokens needed: each request is bounded by its own max_tokens, else by the model's
        # maximum output in the catalog; the runner refuses (exit 2) an item that has neither.
        require_known_prices(entry, ("flex", "standard") if tier in ("auto", "flex") else ("standard",))
        std = entry.tier_prices("standard")
        if not a.max_tokens and entry.max_output_tokens and std is not None and std.output is not None and not a.quiet:
            _err(f"flextier: --max-cost: a line without max_tokens reserves {entry.max_output_tokens:,} output tokens "
                 f"(the catalog's maximum for {entry.name}, ${entry.max_output_tokens * std.output / 1_000_000:,.4f} "
                 f"at standard) until its answer arrives; --max-tokens N reserves less")
    emulate = a.emulate
    if emulate:
        from ..emulator import PROFILES

        if emulate not in PROFILES:
            raise UserInputError(f"unknown profile {emulate!r} (choose from {', '.join(PROFILES)})",
                                 field="--emulate")
        if a.base_url:
            raise UserInputError("give either --emulate or --base-url, not both", field="--base-url")
    from ..jobs.session import find_credentials

    api_key = find_credentials(entry.provider, emulate=bool(emulate), base_url=a.base_url)
    name = a.job or (ident.name if ident is not None else "job")
    named = bool(a.job or a.store)  # the user chose the job's name or store: no guessing from the file
    store_path = Path(a.store) if a.store else default_store_path(name)
    if ident is not None and not named and not store_path.exists():
        from ..jobs.identity import legacy_store

        old = legacy_store(ident)  # a job started by an older flextier under the bare stem: resume it
        if old is not None:
            store_path, name = old, old.stem
    a.store = str(store_path)
    out = a.out or f"{name}.results.jsonl"
    check_out_path(out)  # a directory or a read-only file: one line, exit 2, before the store is touched
    params = {k: v for k, v in (("max_tokens", a.max_tokens), ("temperature", a.temperature)) if v is not None}
    seed = int(a.seed or 0)
    if a.ray is not None:  # the same job on a Ray cluster: its state is a directory, not this store
        from .ray_run import run_on_ray

        return run_on_ray(a, entry=entry, tier=tier, name=name, out=out, cap=cap, params=params, api_key=api_key,
                          concurrency=concurrency, ident=ident, seed=seed, emulated_start=EMULATED_START,
                          store=user_store)

    if lock is None:
        lock = take_lock(store_path)  # a second live runner of this job is refused here, naming the owner's PID
    if not stored and store_path.exists():
        with JobStore(store_path) as s:
            stored = s.job() or {}
        if stored.get("state") == "importing":
            stored = {}

    # load the provider's SDK now, before an emulated clock starts: at x600 its ~1.5 s import
    # was 15 emulated minutes gone from the deadline before the first request
    from ..providers import adapter_class

    adapter_class(entry.provider)
    with contextlib.ExitStack() as stack:
        emu = None
        if emulate:
            from ..emulator import serve

            start: Any = EMULATED_START
            if stored.get("last_clock") and stored.get("clock_domain") == "emulated":
                start = stored["last_clock"]  # continue the emulated day where the job stopped
            emu = stack.enter_context(serve(profile=emulate, seed=seed, time_scale=a.time_scale or 1.0,
                                            start=start))
            clock: Any = emu.clock
            base_urls = emu.base_urls()
            base_url: Optional[str] = base_urls[entry.provider]
            domain = "emulated"
            # the emulated provider's daily curve is known: the planner leans on its quiet hours
            a.extra.setdefault("availability", emu.availability_forecast())
            _offline_s3(stack, a, emu.s3_endpoint_url, emu=emu)
        else:
            base_url = a.base_url
            from ..emulator.clock import loopback_emulator_clock

            clock = loopback_emulator_clock(base_url) if base_url else None
            domain = "emulated" if clock is not None else "wall"
            if clock is not None and base_url:   # a flextier emulator on loopback: stay offline too
                _offline_s3(stack, a, base_url.rstrip("/") + "/s3", emu=None)
            if clock is None:
                from ..jobs.clock import WallClock

                clock = WallClock()
        now = clock.now()
        same_deadline = bool(stored) and stored.get("deadline") is not None and \
            stored.get("deadline_spec") == a.deadline and stored.get("clock_domain") == domain
        if a.deadline is not None and same_deadline:
            deadline = stored["deadline"]  # the identical command again: the same instant, even when past
        elif a.deadline is not None:
            deadline = parse_deadline(a.deadline, now, utc=domain == "emulated")
        elif stored and stored.get("deadline") is not None and stored.get("clock_domain") == domain:
            deadline = stored["deadline"]
        else:
            deadline = None
        config = {"concurrency": concurrency, "standard_concurrency": a.standard_concurrency, "rpm": a.rpm,
                  "tpm": a.tpm, "max_cost": None if cap is None else str(cap), "emulate": emulate,
                  "time_scale": a.time_scale, "seed": seed, "base_url": redact_url(a.base_url), **params}
        if a.batch_s3_uri or a.batch_role_arn:
            config.update(batch_s3_uri=a.batch_s3_uri, batch_role_arn=a.batch_role_arn)
        notes = BodyNotes(tier_mode=tier, entry=entry)  # fields flextier replaces, said once per job
        sink = OutputSink(out)
        sink.announce = lambda msg: _err(f"flextier: {msg}")
        stack.callback(sink.close)
        sink.claim()  # another running job writing this file is refused before anything is sent
        try:
            opened = open_job(store_path, name=name, entry=entry, tier_mode=tier, deadline=deadline,
                              deadline_spec=a.deadline, clock_domain=domain, now=now,
                              input_path=ident.path if ident is not None else a.file,
                              # a resume needs only its store: the file may have changed since (the items
                              # were imported when the job started), so its stored hash stands
                              input_hash=ident.sha256 if ident is not None else (
                                  stored.get("input_hash") if stored.get("state") != "importing" else None),
                              prompt_template=a.prompt_template, skip_invalid=a.skip_invalid, output_path=out,
                              ordered=bool(a.ordered), config=config, lock=lock,
                              allow_empty=a.allow_empty or resume_job is not None,
                              items=None if ident is None else
                              notes.watch(iter_input(ident.path, prompt_template=a.prompt_template)))
        except InvalidInput as exc:
            for e in exc.errors:
                _err(f"flextier: invalid: {e.one_line()}")
            if exc.count > len(exc.errors):
                _err(f"flextier: ... and {exc.count - len(exc.errors)} more")
            raise
        st = stack.enter_context(opened.store)
        for w in notes.warnings():
            _err(f"flextier: warning: {w}")
        late = False
        if opened.resumed:
            deadline = (st.job() or {}).get("deadline")
            # a deadline that passed while the job was stopped stays the job's deadline: the job
            # finishes and the report says it was missed; --deadline gives a new one
            late = deadline is not None and deadline <= now
        if a.retry_failed and st.reset_failed():
            st.reset_output()  # the old error lines go: the output is rewritten from the store
        elif opened.resumed and not a.quiet and st.counts()["failed"]:
            _err(f"flextier: {st.counts()['failed']} items failed in an earlier run and are not sent again; "
                 f"add --retry-failed to send them again")
        if tier == "batch" and entry.provider == "bedrock" and not st.open_batches():
            # Bedrock refuses jobs under its minimum (AWS: 100 records); the lane would send the items
            # online instead, which for --tier batch means paying the standard price without asking.
            from ..batch.bedrock import MIN_RECORDS

            left = st.counts()["pending"] + st.counts()["inflight"]
            if 0 < left < MIN_RECORDS:
                raise UserInputError(f"a Bedrock batch job needs at least {MIN_RECORDS} records and this job has "
                                     f"{left} to send; run it with --tier auto or --tier standard", field="--tier")
        if not a.quiet and not opened.resumed and ident is not None and not named:
            from ..jobs.identity import earlier_jobs

            older = earlier_jobs(ident)
            if older:
                _err(f"flextier: note: {a.file} changed since job {older[0]!r} ran from it, so this is a new job "
                     f"(`flextier resume {older[0]}` continues the old one)")
        if not a.quiet:
            verb = "resuming" if opened.resumed else "starting"
            extra = f", {opened.skipped_invalid} invalid lines skipped" if opened.skipped_invalid else ""
            where = f" against the emulator ({emulate}, x{clock.time_scale:g} time)" if emu else ""
            _err(f"flextier: {verb} job {name!r}: {st.counts()['total']} items, model {entry.name}, tier {tier}"
                 f"{extra}{where}; store {st.path}, results {out}")
            if emu and (a.time_scale or 1.0) == 1.0 and deadline:
                _err("flextier: tip: --time-scale 600 plays ten emulated minutes per second")
        if late and not a.quiet:
            c = st.counts()
            _err(f"flextier: the job's deadline passed {_ago(now - deadline)} ago; finishing the "
                 f"{c['pending'] + c['inflight']} items left (the report shows the deadline as missed; "
                 f"--deadline gives a new one)")
        if a.start not in (None, "auto", "now"):
            raise UserInputError(f"must be auto or now, got {a.start!r}", field="--start")
        from ..jobs.session import plan_start, wait_for_start

        nb = None if a.not_before is None else parse_deadline(a.not_before, now, utc=domain == "emulated",
                                                               field="--not-before")
        if nb is not None and deadline is not None and nb >= deadline:
            raise UserInputError("the start must come before the deadline", field="--not-before")
        plan_start(st, entry, clock, not_before=nb, start=a.start, deadline=deadline,
                   emulated=domain == "emulated", params=params)
        wait_for_start(st, clock, say=None if a.quiet else _err)
        code = _run(st, entry, api_key, base_url, clock, deadline, tier, concurrency, a, cap, params, sink,
                    utc=domain == "emulated", seed=seed)
        if not a.quiet:
            from ..jobs.report import build_report, format_report, write_html

            r = build_report(st)
            typer.echo(format_report(r))
            from ..jobs.batching import lane_switches

            for line in lane_switches(st):   # why work left the batch lane
                typer.echo(line)
            if emu is not None:
                from ..cost import fmt_usd

                billed = sum((Decimal(x["cost"]) for x in emu.ledger() if x.get("cost")), Decimal(0))
                typer.echo(f"emulator ledger: billed {fmt_usd(billed)} for {len(emu.ledger())} requests "
                           f"(client ledger {fmt_usd(r['billed_total'])}"
                           + (f" incl. {r['duplicates']['n']} duplicates" if r["duplicates"]["n"] else "") + ")")
            if a.html:
                typer.echo(f"report: {write_html(r, a.html)}")
            if code == EXIT_FAILED_ITEMS:
                from ..jobs.progress import resume_command

                _err(f"flextier: {r['counts']['failed']} items failed (reasons in {out}); to send them again: "
                     f"{resume_command(name, str(store_path))} --retry-failed")
        elif a.html:  # --quiet silences the summary, not the page asked for
            from ..jobs.report import build_report, write_html

            write_html(build_report(st), a.html)
        return code


def _ago(seconds: float) -> str:
    from ..jobs.api import _human

    return _human(seconds)


def _run(st: Any, entry: Any, api_key: Optional[str], base_url: Optional[str], clock: Any, deadline: Optional[float],
         tier: str, concurrency: int, a: RunArgs, cap: Optional[Decimal], params: dict[str, Any], sink: Any,
         *, utc: bool, seed: int) -> int:
    from ..jobs.clocklag import LagMonitor, record_lag
    from ..jobs.exitcodes import finished_code
    from ..jobs.progress import Progress, resume_command, stopped_message
    from ..jobs.runner import JobPaused
    from ..jobs.session import BatchSettings, build_runner, mark_done, mark_paused, mark_running, mark_stopped
    from ..jobs.store import NoSpace, store_failure

    runner = build_runner(st, entry, clock=clock, tier=tier, deadline=deadline, concurrency=concurrency,
                          standard_concurrency=a.standard_concurrency, rpm=a.rpm, tpm=a.tpm, max_cost=cap,
                          params=params, base_url=base_url, api_key=api_key, output=sink,
                          batch=BatchSettings(s3_uri=a.batch_s3_uri, role_arn=a.batch_role_arn,
                                              s3_endpoint_url=a.batch_s3_endpoint),
                          ordered=bool(a.ordered), seed=seed, **a.extra)
    if runner.stats.recovered and not a.quiet:
        lost = st.recovered_sends
        _err(f"flextier: {runner.stats.recovered} items were in flight when the job stopped; they are sent again"
             + (f" ({lost} sends that may have been billed are marked 'possibly billed')" if lost else ""))
    lag = (LagMonitor(clock.time_scale, inflight=runner.in_flight)
           if getattr(clock, "time_scale", 1.0) > 1 else None)  # client lag vs emulated time
    progress = Progress(runner.snapshot, quiet=a.quiet, utc=utc, title=f"flextier run {st.job()['name']}", lag=lag)

    from ..jobs.signals import DEFAULT_DRAIN_TIMEOUT, GracefulStop

    stopper = GracefulStop(runner, notify=_err,
                           drain_timeout=DEFAULT_DRAIN_TIMEOUT if a.drain_timeout is None else a.drain_timeout)

    async def main() -> int:
        stopper.install(asyncio.get_running_loop())  # SIGTERM / Ctrl-C: drain, record, "stopped"
        try:
            return await job()
        finally:
            stopper.uninstall()

    async def job() -> int:
        mark_running(st, clock)
        progress.start()
        try:
            await runner.run()
        except JobPaused as exc:
            if exc.kind == "interrupted":
                await progress.stop()
                mark_stopped(st, str(exc))
                cut = runner.stop_cut
                _err(f"flextier: {exc}: {runner.stop_inflight} requests were in flight"
                     + (f", {cut} cut off (marked possibly billed)" if cut else ", all recorded")
                     + f"; the job is saved. Resume with: {resume_command(st.job()['name'], str(st.path))}")
                return stopper.exit_code
            runner.stats.paused = str(exc)
            mark_paused(st, str(exc))
            await progress.stop()
            _err(f"flextier: paused: {exc}")
            return EXIT_PAUSED
        except asyncio.CancelledError:
            mark_stopped(st, "interrupted")
            await progress.stop()
            _err(stopped_message(st.job()["name"], str(st.path)))
            raise
        except Exception as exc:
            err = exc if isinstance(exc, NoSpace) else store_failure(exc, st.path)
            if isinstance(err, NoSpace):
                await progress.stop()
                with contextlib.suppress(Exception):  # the disk may still be full
                    mark_paused(st, str(err))
            raise
        await progress.stop()
        mark_done(st, clock)
        return finished_code(st, runner.stats.failed)

    try:
        return asyncio.run(main())
    finally:  # the results file is the caller's (execute owns and closes it)
        record_lag(st, lag, clock.now())


_COMMON = {
    "deadline": "A duration (3h, 90m), a clock time (15:30, its next occurrence) or a date-time "
                "(2026-11-28T06:00). Without one, flex only and never standard.",
    "tier": "flex | standard | auto (the planner decides: flex, standard, or batch when the deadline allows) | "
            "batch (provider batch APIs, half price, up to 24 h)",
    "batch_s3_uri": "Bedrock batch lane: S3 location for batch input and output (s3://BUCKET/PREFIX).",
    "batch_role_arn": "Bedrock batch lane: IAM role ARN that Bedrock assumes to read and write that location.",
    "drain_timeout": "On SIGTERM or the first Ctrl-C: wall seconds to wait for the requests in flight "
                     "before stopping (default 30; a second Ctrl-C stops at once).",
    "emulate": "Run against the built-in emulator with this profile (calm, weekday, peak, outage, chaos); "
               "no keys needed.",
}


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        file: str = typer.Argument(..., help="Job file: JSONL (OpenAI batch lines or {id, prompt}), CSV or Parquet."),
        model: str = typer.Option(..., "--model", "-m", help="provider/model-id or alias"),
        deadline: Optional[str] = typer.Option(None, "--deadline", help=_COMMON["deadline"]),
        tier: str = typer.Option("auto", "--tier", help=_COMMON["tier"]),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="Results JSONL (default <job>.results.jsonl)."),
        job: Optional[str] = typer.Option(None, "--job", help="Job name (default: the file's stem and a short hash "
                                          "of its path and content, e.g. jobs-3f2a9c1b)."),
        store: Optional[str] = typer.Option(None, "--store", help="Store path (default ./.flextier/<job>.db)."),
        concurrency: int = typer.Option(256, "--concurrency", help="Most flex requests in flight."),
        standard_concurrency: Optional[int] = typer.Option(None, "--standard-concurrency",
                                                           help="Most standard requests in flight."),
        rpm: Optional[float] = typer.Option(None, "--rpm", help="Requests per minute limit."),
        tpm: Optional[float] = typer.Option(None, "--tpm", help="Tokens per minute limit."),
        max_cost: Optional[str] = typer.Option(None, "--max-cost", help="Spending cap in USD: spent + reserved never passes it (see README)."),
        ordered: bool = typer.Option(False, "--ordered", help="Write results in input order."),
        skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Run without the invalid lines."),
        allow_empty: bool = typer.Option(False, "--allow-empty", help="Run a job file with no items (else exit 2)."),
        prompt_template: Optional[str] = typer.Option(None, "--prompt-template",
                                                      help="For CSV/Parquet: a prompt with {column} placeholders."),
        emulate: Optional[str] = typer.Option(None, "--emulate", help=_COMMON["emulate"]),
        time_scale: Optional[float] = typer.Option(None, "--time-scale",
                                                   help="With --emulate: emulated seconds per wall second."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="A compatible endpoint for the provider."),
        prices: Optional[str] = typer.Option(None, "--prices", help="Extra price file (JSON or TOML)."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Output token limit per request."),
        temperature: Optional[float] = typer.Option(None, "--temperature"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no summary."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, send failed items again."),
        html: Optional[str] = typer.Option(None, "--html", help="Also write the HTML report here."),
        seed: int = typer.Option(0, "--seed", help="Seed for jitter and the emulator."),
        batch_s3_uri: Optional[str] = typer.Option(None, "--batch-s3-uri", help=_COMMON["batch_s3_uri"]),
        batch_role_arn: Optional[str] = typer.Option(None, "--batch-role-arn", help=_COMMON["batch_role_arn"]),
        drain_timeout: Optional[float] = typer.Option(None, "--drain-timeout", help=_COMMON["drain_timeout"]),
        not_before: Optional[str] = typer.Option(None, "--not-before", help="Send nothing before this time "
                                                 "(a duration, 15:30 or 2026-11-28T06:00); waits visibly, "
                                                 "resumably."),
        start: Optional[str] = typer.Option(None, "--start", help="auto: start at the time `flextier when` "
                                            "recommends (learned flex forecast, or off-peak hours); now: at once."),
        ray: Optional[str] = typer.Option(None, "--ray", help="Run on a Ray cluster: auto (the one this machine "
                                          "belongs to) or its ADDRESS; needs flextier[ray] (README, Scaling out "
                                          "with Ray)."),
        ray_workers: Optional[int] = typer.Option(None, "--ray-workers", help="With --ray: worker actors (default 2)."),
        provider_store: bool = typer.Option(True, "--provider-store/--no-provider-store",
                                            help="OpenAI: keep answers at the provider (store: true + item id in "
                                                 "metadata) so a resume after a crash reads back what was in flight "
                                                 "instead of paying twice (see README)."),
    ) -> None:
        """Run a bulk job on flex, paying for standard only when the deadline needs it. Resumable."""
        code = execute(RunArgs(file=file, model=model, deadline=deadline, tier=tier, out=out, job=job, store=store,
                               concurrency=concurrency, standard_concurrency=standard_concurrency, rpm=rpm, tpm=tpm,
                               max_cost=max_cost, ordered=ordered, skip_invalid=skip_invalid,
                               prompt_template=prompt_template, emulate=emulate, time_scale=time_scale,
                               base_url=base_url, prices=prices, max_tokens=max_tokens, temperature=temperature,
                               quiet=quiet, retry_failed=retry_failed, html=html, seed=seed,
                               batch_s3_uri=batch_s3_uri, batch_role_arn=batch_role_arn,
                               drain_timeout=drain_timeout, allow_empty=allow_empty, not_before=not_before,
                               start=start, ray=ray, ray_workers=ray_workers,
                               extra={} if provider_store else {"provider_store": False}))
        raise typer.Exit(code)

    @app.command()
    def resume(
        job: str = typer.Argument(..., help="Job name as `run` printed it (or its stem when unique), the job "
                                  "file, or a store path."),
        store: Optional[str] = typer.Option(None, "--store"),
        deadline: Optional[str] = typer.Option(None, "--deadline", help="A new deadline."),
        max_cost: Optional[str] = typer.Option(None, "--max-cost", help="A new (higher) spending cap in USD."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency"),
        emulate: Optional[str] = typer.Option(None, "--emulate", help=_COMMON["emulate"]),
        time_scale: Optional[float] = typer.Option(None, "--time-scale"),
        base_url: Optional[str] = typer.Option(None, "--base-url"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Send failed items again."),
        html: Optional[str] = typer.Option(None, "--html"),
        drain_timeout: Optional[float] = typer.Option(None, "--drain-timeout", help=_COMMON["drain_timeout"]),
        provider_store: bool = typer.Option(True, "--provider-store/--no-provider-store",
                                            help="OpenAI: keep answers at the provider (store: true + item id in "
                                                 "metadata) so a resume after a crash reads back what was in flight "
                                                 "instead of paying twice (see README)."),
    ) -> None:
        """Continue a stopped or crashed job; done items are never sent again."""
        code = execute(RunArgs(deadline=deadline, max_cost=max_cost, concurrency=concurrency, emulate=emulate,
                               time_scale=time_scale, base_url=base_url, quiet=quiet, retry_failed=retry_failed,
                               html=html, store=store, drain_timeout=drain_timeout,
                               extra={} if provider_store else {"provider_store": False}), resume_job=job)
        raise typer.Exit(code)

    @app.command()
    def status(
        job: str = typer.Argument(..., help="Job name or store path."),
        store: Optional[str] = typer.Option(None, "--store"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Progress of a running or stopped job, read from its store."""
        from ..cost import fmt_usd
        from ..jobs.progress import inflight_text, money_fields
        from ..jobs.lock import live_owner
        from ..jobs.store import JobStore

        path = find_store(job, store)
        with _reading(path), JobStore(path, create=False) as st:
            j = st.job() or {}
            c = st.counts()
            t = st.ledger_totals()
            tiers = st.tier_counts()
            pb, bound = st.possibly_billed()
            in_batch = st.inflight_in_batch()
        owner = live_owner(path)
        state = j.get("state")
        if state == "running" and owner is None:
            state = "stopped"  # no live process holds the job's lock: it crashed or was killed; resume it
        if as_json:
            typer.echo(json.dumps({"job": j.get("name"), "state": state, "owner_pid": owner, "counts": c,
                                   "by_tier": tiers,
                                   "spent": None if t["unknown_cost_rows"] else str(t["spent"]),
                                   "spent_known": str(t["spent"]), "unknown_cost_results": t["unknown_cost_rows"],
                                   "standard": str(t["standard"]),
                                   "possibly_billed": pb, "message": j.get("message")}, indent=2))
            return
        m = money_fields(t["spent"], t["standard"], t["unknown_cost_rows"])  # same words as the live panel
        live = f" in process {owner}" if owner else ""
        typer.echo(f"job {j.get('name')} [{state}{live}] model {j.get('model')}: "
                   f"{c['done']}/{c['total']} done, {c['failed']} failed, "
                   f"{inflight_text(c['inflight'] - in_batch, in_batch)} in flight, {c['pending']} pending")
        typer.echo("served: " + (", ".join(f"{k} {v}" for k, v in sorted(tiers.items())) or "-"))
        typer.echo(f"spent {m['spent']} vs {m['standard']} at standard (saved {m['saved']})")
        if pb:
            typer.echo(f"possibly billed: {pb} sends (at most {fmt_usd(bound)})")
        if j.get("message"):
            typer.echo(f"message: {j['message']}")

    @app.command()
    def report(
        job: Optional[str] = typer.Argument(None, help="Job name or store path."),
        store: Optional[str] = typer.Option(None, "--store"),
        html: Optional[str] = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
        as_json: bool = typer.Option(False, "--json"),
        gateway: bool = typer.Option(False, "--gateway", help="Report the gateway's ledger (--store = its path)."),
        since: str = typer.Option("24h", "--since", help="With --gateway: how far back (e.g. 24h, 7d)."),
    ) -> None:
        """Summary of a job: tiers, cost against standard, % saved, latency, deadline (or of the gateway)."""
        if gateway:
            from .serve import report_gateway

            return report_gateway(store, since, html, as_json)
        if job is None:
            raise UserInputError("give a job name or store path (or --gateway)", field="JOB")
        from ..jobs.report import build_report, format_report, report_json, write_html
        from ..jobs.store import JobStore

        from .ray_run import ray_state_root

        ray_dir = Path(store or job)
        if not (ray_dir / "job.json").is_file() and not Path(job).exists() and "/" not in job:
            ray_dir = ray_state_root(store) / job  # a `flextier run --ray` job, by name
        if (ray_dir / "job.json").is_file() and (ray_dir / "stores").is_dir():
            # a Ray job's state directory (flextier.ray): its batch stores, merged into one
            import tempfile

            from ..ray.state import merged_store

            with tempfile.TemporaryDirectory(prefix="flextier-ray-report-") as tmp:
                st = merged_store(ray_dir, Path(tmp) / "job.db")
                try:
                    r = build_report(st)
                finally:
                    st.close()
        else:
            path = find_store(job, store)
            with _reading(path), JobStore(path, create=False) as st:
                r = build_report(st)
        typer.echo(report_json(r) if as_json else format_report(r))
        if html:
            typer.echo(f"report: {write_html(r, html)}", err=as_json)
