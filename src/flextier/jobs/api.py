"""The runner from Python: ``run_job`` / ``arun_job`` / ``astream_job``, and the job setup the CLI shares.

Why a Python API on top of the CLI's engine: bulk LLM work usually sits inside a
pipeline, and step 2 often consumes step 1's outputs. ``astream_job`` yields each result
as soon as it is durable, and accepts an *async* iterable of items, so one job can feed
the next while both run (chaining); ``run_job`` is the one-call form::

    import flextier
    results = flextier.run_job(["Summarise: ...", {"id": "b", "prompt": "..."}],
                               model="openai/gpt-5.4-mini", deadline="3h")
    for r in results:
        print(r.custom_id, r.tier, r.cost, r.text)

Items are strings (prompts), dicts in the simple shape (``{"id", "prompt"}`` /
``{"id", "messages"}``) or OpenAI batch-file lines. Each job still has its SQLite store
(a temporary one unless ``store=`` names a file), so the same durability rules hold.

:func:`open_job` and :func:`parse_deadline` are what ``flextier run`` uses too: one place
decides how a store is created, validated, imported and resumed.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, Iterable

from ..catalog import ModelEntry, default_catalog
from ..errors import UserInputError
from ..timeparse import parse_deadline as _tp_deadline
from .input import (MAX_REPORTED_ERRORS, InvalidInput, InvalidLine, JobItem, detect_format, file_sha256,
                    item_from_object, iter_input)
from .identity import identify_input
from .lock import JobLock
from .output import OutputSink
from ..errors import JobPaused
from .clock import Clock, WallClock
from .stats import Stats
from .session import build_runner
from .store import FinishedItem, JobStore, redact_url

TIER_CHOICES = ("auto", "flex", "standard", "batch")

# --------------------------------------------------------------------------------------
# deadlines
# --------------------------------------------------------------------------------------

def parse_deadline(spec: str | float | datetime | None, now: float, *, utc: bool = False,
                   field: str = "--deadline") -> float | None:
    """An absolute deadline (epoch seconds on the job's clock) from a user's spec.

    Strings are read by :func:`flextier.timeparse.parse_deadline` (shared with ``advise``):
    a duration (``3h``, ``1h30m``), a clock time (``15:30``, its next occurrence) or a
    date-time (``2026-11-28T06:00``). Times without an offset are local, or UTC on the
    emulator's clock (whose epoch is UTC). Numbers are epoch seconds and datetimes are taken
    as they are (Python API). A deadline already past is an error: there is no cheap way to
    be late.
    """
    if spec is None or spec == "":
        return None
    if isinstance(spec, bool):
        raise UserInputError("deadline must be a duration, a time or a date-time", field=field)
    if isinstance(spec, (int, float)):
        when = float(spec)
    elif isinstance(spec, datetime):
        when = (spec if spec.tzinfo else spec.replace(tzinfo=timezone.utc if utc else None).astimezone()).timestamp()
    else:
        base = datetime.fromtimestamp(now, tz=timezone.utc) if utc else datetime.fromtimestamp(now).astimezone()
        return _tp_deadline(str(spec), base, field=field).timestamp()
    if when <= now:
        raise UserInputError(f"the deadline is already past ({_human(now - when)} ago)", field=field)
    return when


def _human(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def parse_money(value: Any, field: str = "--max-cost") -> Decimal | None:
    """A dollar amount as an exact Decimal (``"12.50"``, ``"$12.50"``, 12.5)."""
    if value is None:
        return None
    try:
        d = Decimal(str(value).strip().lstrip("$"))
    except (InvalidOperation, ValueError):
        raise UserInputError(f"{value!r} is not an amount of dollars", field=field) from None
    if not d.is_finite() or d <= 0:
        raise UserInputError("must be a positive amount of dollars", field=field)
    return d


# --------------------------------------------------------------------------------------
# job setup (shared with the CLI)
# --------------------------------------------------------------------------------------

def job_name_for(path: str | os.PathLike[str]) -> str:
    """Default job name: the input file's stem plus a short hash of its resolved path and content.

    Two different files never share a store and the same file always resumes its own; see
    :mod:`flextier.jobs.identity`.
    """
    return identify_input(path).name


@dataclass
class OpenedJob:
    """A store ready to run: new (imported now) or resumed."""

    store: JobStore
    resumed: bool
    imported: int
    skipped_invalid: int
    job: dict[str, Any]


def open_job(store_path: str | os.PathLike[str], *, name: str, entry: ModelEntry, tier_mode: str,
             deadline: float | None, deadline_spec: str | None, clock_domain: str, now: float,
             input_path: str | None, prompt_template: str | None, skip_invalid: bool,
             output_path: str | None, ordered: bool, config: dict[str, Any],
             items: Iterable[JobItem | InvalidLine] | None = None, input_label: str = "<items>",
             lock: JobLock | None = None, input_hash: str | None = None, allow_empty: bool = True) -> OpenedJob:
    """Take the job's owner lock, then create the store and import the input, or reopen it to resume.

    The lock (``lock``, or one taken here) refuses a second live runner of the job with
    :class:`~flextier.jobs.lock.JobBusy`; it is released when the store is closed.
    Resuming is refused when the input file changed or a different model is asked for:
    results of two different jobs must never be mixed in one store. A new job with no items
    is refused unless ``allow_empty``. Nothing is sent here.
    """
    lock = lock or JobLock(store_path)
    lock.acquire()
    try:
        store = JobStore(store_path)
    except BaseException:
        lock.release()
        raise
    store.lock = lock
    try:
        job = store.job()
        in_hash = input_hash or (file_sha256(input_path) if input_path and Path(input_path).is_file() else None)
        if job is not None and job["state"] != "importing":
            if job["model"] != entry.name:
                raise UserInputError(f"job {name!r} was started with model {job['model']}; use --job NEW_NAME "
                                     f"for a new job", field="--model")
            if (prompt_template or None) != (job["prompt_template"] or None):
                # other prompts from the same file are other requests: never mixed into one job's results
                raise UserInputError(f"job {name!r} was started with --prompt-template "
                                     f"{job['prompt_template']!r}; use --job NEW_NAME for a new job",
                                     field="--prompt-template")
            if input_path and job["input_hash"] and in_hash and in_hash != job["input_hash"]:
                raise UserInputError(f"the input file changed since job {name!r} started; results would not match. "
                                     f"Use --job NEW_NAME for a new job, or delete {store.path}", file=input_path)
            upd: dict[str, Any] = {"config": {**job["config"], **config}, "tier_mode": tier_mode,
                                   "runs": job["runs"] + 1, "ordered": int(ordered)}
            if deadline_spec is not None and (deadline_spec != job["deadline_spec"]
                                              or clock_domain != job["clock_domain"]):
                upd.update(deadline=deadline, deadline_spec=deadline_spec, clock_domain=clock_domain)
            if output_path is not None and output_path != job["output_path"]:
                upd["output_path"] = output_path
                upd.update(out_offset=0, out_gen=0, out_next_seq=0)  # a new file gets every result
            store.update_job(**upd)
            return OpenedJob(store, True, 0, job["skipped_invalid"], store.job() or {})
        if job is None:
            store.create_job(name=name, model=entry.name, tier_mode=tier_mode, created_at=now, config=config,
                             deadline=deadline, deadline_spec=deadline_spec, clock_domain=clock_domain,
                             input_path=str(input_path) if input_path else None, input_hash=in_hash,
                             input_format=detect_format(input_path) if input_path else "python",
                             prompt_template=prompt_template, output_path=output_path, ordered=int(ordered),
                             runs=1)
        if items is None:
            assert input_path is not None
            items = iter_input(input_path, prompt_template=prompt_template)
        rep = store.import_items(items, file=str(input_path or input_label), skip_invalid=skip_invalid)
        if rep.total == 0 and not allow_empty:
            store.discard()  # an empty job refused: remove the store created for it
            what = f"all {rep.invalid} lines are invalid" if rep.invalid else "it holds no items"
            raise UserInputError(f"nothing to run: {what}; give --allow-empty to run an empty job anyway",
                                 file=str(input_path or input_label))
        return OpenedJob(store, False, rep.total, rep.invalid, store.job() or {})
    except BaseException:
        store.close()
        raise


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------

@dataclass
class JobResult:
    """One item's outcome, as the Python API returns it (the output line, plus the text)."""

    custom_id: str
    ok: bool
    text: str | None
    tier: str | None
    attempts: int
    cost: Decimal | None
    standard_cost: Decimal | None
    error: dict[str, Any] | None
    line: dict[str, Any]
    seq: int = 0

    @property
    def body(self) -> dict[str, Any] | None:
        resp = self.line.get("response") or {}
        return resp.get("body") if self.ok else None


def _result(f: FinishedItem, line: dict[str, Any]) -> JobResult:
    ft = line.get("flextier") or {}
    return JobResult(custom_id=line.get("custom_id", ""), ok=line.get("error") is None, text=f.text,
                     tier=ft.get("tier"), attempts=ft.get("attempts", 0), cost=f.cost,
                     standard_cost=f.standard_cost, error=line.get("error"), line=line, seq=f.seq)


# --------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------

def _resolve_model(model: str | ModelEntry) -> ModelEntry:
    return model if isinstance(model, ModelEntry) else default_catalog().resolve(model)


async def astream_job(items: Iterable[Any] | AsyncIterable[Any], *, model: str | ModelEntry,
                      deadline: str | float | datetime | None = None, tier: str = "auto",
                      concurrency: int = 64, standard_concurrency: int | None = None,
                      max_cost: Decimal | str | float | None = None, max_tokens: int | None = None,
                      temperature: float | None = None, rpm: float | None = None, tpm: float | None = None,
                      store: str | os.PathLike[str] | None = None, job: str | None = None,
                      base_url: str | None = None, api_key: str | None = None, adapter: Any = None,
                      clock: Clock | None = None, skip_invalid: bool = False,
                      out: str | os.PathLike[str] | None = None, batch_backend: Any = None,
                      **runner_opts: Any) -> AsyncIterator[JobResult]:
    """Run a job and yield each result as soon as it is durable (completion order).

    A sync iterable is validated whole before anything is sent (raising
    :class:`~flextier.jobs.input.InvalidInput`); an async iterable is consumed while the
    job runs, so items can arrive from an earlier step of a pipeline.
    """
    if tier not in TIER_CHOICES:
        raise UserInputError(f"tier must be one of {', '.join(TIER_CHOICES)}", field="tier")
    entry = _resolve_model(model)
    clk: Clock = clock or WallClock()
    now = clk.now()
    dl = parse_deadline(deadline, now, utc=not isinstance(clk, WallClock), field="deadline")
    cap = parse_money(max_cost, "max_cost") if max_cost is not None else None
    params = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    tmpdir = None
    if store is None:
        tmpdir = tempfile.mkdtemp(prefix="flextier-job-")
        store_path = Path(tmpdir) / "job.db"
    else:
        store_path = Path(store)
    is_async = hasattr(items, "__aiter__")
    name = job or "python"

    def validated(it: Iterable[Any]) -> Iterable[JobItem | InvalidLine]:
        for i, obj in enumerate(it):
            yield item_from_object(obj, i)

    # the results file is checked and locked before the store is touched: a directory, a read-only
    # file or another job's file is refused before anything starts (jobs/output.py)
    sink = OutputSink(out, field="out") if out else None
    try:
        if sink is not None:
            sink.claim()
        opened = open_job(store_path, name=name, entry=entry, tier_mode=tier, deadline=dl,
                          deadline_spec=None if deadline is None else str(deadline), clock_domain="python",
                          now=now, input_path=None, prompt_template=None, skip_invalid=skip_invalid,
                          output_path=None if out is None else str(out), ordered=False,
                          config={"concurrency": concurrency, "max_cost": None if cap is None else str(cap),
                                  "base_url": redact_url(base_url), **params},
                          items=[] if is_async else validated(items))  # type: ignore[arg-type]
    except BaseException:
        if sink is not None:
            sink.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    st = opened.store
    queue: asyncio.Queue[JobResult | None] = asyncio.Queue()
    try:
        # The batch lane needs the provider's batch API: on by default against a real
        # endpoint (no custom adapter) for a whole input; a streamed input goes online.
        runner = build_runner(st, entry, clock=clk, tier=tier, deadline=dl, concurrency=concurrency,
                              standard_concurrency=standard_concurrency, rpm=rpm, tpm=tpm, max_cost=cap,
                              params=params, base_url=base_url, api_key=api_key, adapter=adapter,
                              batch_backend=batch_backend, batch_lane=adapter is None and not is_async,
                              output=sink, on_result=lambda f, line: queue.put_nowait(_result(f, line)),
                              input_open=is_async, **runner_opts)
    except BaseException:
        if sink is not None:
            sink.close()
        st.close()
        raise

    async def feed() -> None:
        """Import an async iterable while the job runs, validating each item on arrival."""
        buf: list[JobItem] = []
        i = 0
        errors: list[UserInputError] = []
        n_bad = 0

        def push() -> None:
            nonlocal n_bad
            bad = st.append_items(buf)
            buf.clear()
            for b in bad:
                n_bad += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append(b.to_error(name))
            runner.more_items(st.counts()["total"])

        try:
            async for obj in items:  # type: ignore[union-attr]
                rec = item_from_object(obj, i)
                i += 1
                if isinstance(rec, InvalidLine):
                    n_bad += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(rec.to_error(name))
                    continue
                buf.append(rec)
                if len(buf) >= 256:
                    push()
                else:
                    await asyncio.sleep(0)
                    if runner.queued() == 0:
                        push()
            if buf:
                push()
        except Exception as exc:  # the caller's iterable (or the store) failed: stop the job loudly
            runner.fail(exc)
            raise
        finally:
            runner.input_closed()
        if n_bad and not skip_invalid:
            runner.pause(JobPaused(InvalidInput(name, errors, n_bad).one_line(), kind="invalid"))

    async def main() -> Stats:
        feeder = asyncio.get_running_loop().create_task(feed()) if is_async else None
        try:
            return await runner.run()
        finally:
            if feeder is not None:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            queue.put_nowait(None)

    task = asyncio.get_running_loop().create_task(main())
    try:
        while True:
            r = await queue.get()
            if r is None:
                break
            yield r
        await task  # re-raise JobPaused etc.
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if runner.output is not None:
            runner.output.close()
        st.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


async def arun_job(items: Iterable[Any] | AsyncIterable[Any], *, model: str | ModelEntry,
                   deadline: str | float | datetime | None = None, **opts: Any) -> list[JobResult]:
    """Run a job to the end and return every result, in input order. See :func:`astream_job`."""
    out = [r async for r in astream_job(items, model=model, deadline=deadline, **opts)]
    out.sort(key=lambda r: r.seq)
    return out


def run_job(items: Iterable[Any], *, model: str | ModelEntry, deadline: str | float | datetime | None = None,
            **opts: Any) -> list[JobResult]:
    """Blocking form of :func:`arun_job`, for scripts and notebooks without a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_job(items, model=model, deadline=deadline, **opts))
    raise RuntimeError("run_job() was called inside a running event loop; use `await flextier.arun_job(...)`")


__all__ = ["run_job", "arun_job", "astream_job", "JobResult", "parse_deadline", "parse_money",
           "open_job", "OpenedJob", "job_name_for", "TIER_CHOICES"]
