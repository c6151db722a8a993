"""``flextier run JOBS.jsonl ... --ray auto|ADDRESS``: the same job file, flags, output file and
report, on a Ray cluster (README, "Scaling out with Ray").

Why a front end and not a second engine: the file is read and checked by the one input path
(:func:`flextier.jobs.api.open_job` into a scratch store: the same one-line errors, duplicate
ids, ``--skip-invalid``), each line becomes a row of a Ray Dataset with the line as its
``request`` column, and :func:`flextier.ray.process` runs it: a Runner per batch built by
``jobs/session.build_runner``, one controller per job. The results file is written from the
job's stores when the run ends (the same lines ``flextier run`` writes: they are the lines the
batch runners stored), and ``flextier report JOB`` reads the job's state directory,
``.flextier/ray/JOB`` (or ``--store DIR``'s ``JOB``). Running the same command again resumes:
done ids are skipped, nothing is paid twice.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import UserInputError

__all__ = ["ray_state_root", "check_ray_flags", "run_on_ray"]


def ray_state_root(store: Optional[str]) -> Path:
    """Where ``--ray`` jobs keep their state: ``--store DIR``, else ``.flextier/ray`` (absolute:
    the workers' working directory is not this one's)."""
    return (Path(store) if store else Path(".flextier") / "ray").absolute()


def check_ray_flags(a: Any, *, tier: str, resume: bool) -> None:
    """The flags ``--ray`` cannot honour yet: one line, exit 2, before anything is read or sent."""
    if a.ray is None:
        if a.ray_workers is not None:
            raise UserInputError("is for a --ray run (add --ray auto or --ray ADDRESS)", field="--ray-workers")
        return
    if not str(a.ray).strip():
        raise UserInputError("give auto or the cluster's ADDRESS (host:port or ray://host:port)", field="--ray")
    if resume:
        raise UserInputError("a --ray job resumes by running the same `flextier run ... --ray` command again",
                             field="--ray")
    why = None
    if tier == "batch":
        why = "--tier batch (the batch lane is not distributed yet; use --tier auto, flex or standard)"
    elif a.not_before is not None or a.start is not None:
        why = "--not-before/--start (start the cluster run when you want it to start)"
    elif a.retry_failed:
        why = "--retry-failed (failed ids are final in a --ray job's state)"
    elif a.batch_s3_uri or a.batch_role_arn:
        why = "--batch-s3-uri/--batch-role-arn (no batch lane on Ray)"
    if why:
        raise UserInputError(f"cannot be combined with {why}", field="--ray")
    if a.ray_workers is not None and a.ray_workers < 1:
        raise UserInputError(f"must be an integer >= 1, got {a.ray_workers}", field="--ray-workers")


def _connect(address: str) -> Any:
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserInputError("needs Ray Data: pip install 'flextier[ray]'", field="--ray") from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    except Exception as exc:  # no cluster there: one line, not Ray's traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserInputError(f"cannot reach a Ray cluster at {address!r}: {first}", field="--ray") from None
    return ray


def run_on_ray(a: Any, *, entry: Any, tier: str, name: str, out: str, cap: Any, params: dict[str, Any],
               api_key: Optional[str], concurrency: int, ident: Any, seed: int, emulated_start: str,
               store: Optional[str]) -> int:
    """Run the job file on the cluster; print the summary; return the exit code of ``flextier run``."""
    from ..errors import InvalidInput
    from ..jobs.api import open_job
    from ..jobs.exitcodes import EXIT_PAUSED, finished_code
    from ..jobs.input import iter_input
    from ..jobs.output import OutputSink
    from ..jobs.report import build_report, format_report, write_html
    from ..emulator.clock import loopback_emulator_clock

    def say(msg: str) -> None:
        if not a.quiet:
            typer.echo(msg, err=True)

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flextier-ray-")))
        # 1. the one input path: the same checks and one-line errors as `flextier run`
        try:
            opened = open_job(tmp / "input.db", name=name, entry=entry, tier_mode=tier, deadline=None,
                              deadline_spec=None, clock_domain="wall", now=0.0, input_path=ident.path,
                              prompt_template=a.prompt_template, skip_invalid=a.skip_invalid, output_path=None,
                              ordered=False, config={}, allow_empty=a.allow_empty,
                              items=iter_input(ident.path, prompt_template=a.prompt_template))
        except InvalidInput as exc:
            for e in exc.errors:
                typer.echo(f"flextier: invalid: {e.one_line()}", err=True)
            if exc.count > len(exc.errors):
                typer.echo(f"flextier: ... and {exc.count - len(exc.errors)} more", err=True)
            raise
        with opened.store as st:
            rows = [{"id": r["custom_id"], "request": r["request"]} for r in st.iter_items()]
        order = [r["id"] for r in rows]
        # 2. where the requests go, on which clock
        availability = a.extra.get("availability")
        if a.emulate:
            from ..emulator import serve

            emu = stack.enter_context(serve(profile=a.emulate, seed=seed, time_scale=a.time_scale or 1.0,
                                            start=emulated_start))
            base_url: Optional[str] = emu.base_urls()[entry.provider]
            clock: Any = emu.clock
            availability = availability or emu.availability_forecast()
        else:
            base_url = a.base_url
            clock = loopback_emulator_clock(base_url) if base_url else None
        ray = _connect(str(a.ray))
        import flextier.ray as fray

        workers = a.ray_workers or 2
        root = ray_state_root(store)
        say(f"flextier: job {name!r} on Ray ({a.ray}): {len(rows)} items, model {entry.name}, tier {tier}, "
            f"{workers} workers; state {root / name}, results {out}")
        from ..ray.state import JobState, merged_store

        state = JobState(root, name)
        done = state.done_ids("id") if state.meta() else set()
        left = [r for r in rows if r["id"] not in done]
        if not left and not list(state.orphans()):  # the same command again after it finished: nothing to run
            prog: dict[str, Any] = {}
        else:
            prog = _run_cluster(ray, fray, rows, a, entry=entry, tier=tier, name=name, root=root, cap=cap,
                                params=params, api_key=api_key, concurrency=concurrency, base_url=base_url,
                                clock=clock, workers=workers, availability=availability, seed=seed)
        # 3. the results file and the report, from the job's stores (every run's)
        merged = merged_store(root / name, tmp / "merged.db", order=order)
        try:
            lines = [r["result"] for r in merged.iter_items() if r["state"] in ("done", "failed") and r["result"]]
            sink = OutputSink(out)
            try:
                sink.prepare(0)
                for i in range(0, len(lines), 1000):
                    sink.write(lines[i:i + 1000])
            finally:
                sink.close()
            r = build_report(merged)
            c = merged.counts()
            if not a.quiet:
                typer.echo(format_report(r))
            if a.html:
                typer.echo(f"report: {write_html(r, a.html)}")
            if c["done"] + c["failed"] < len(order):
                why = prog.get("paused") or "some items were not sent"
                typer.echo(f"flextier: paused: {why}; run the same command again to go on (higher --max-cost if the "
                           f"cap was reached)", err=True)
                return EXIT_PAUSED
            return finished_code(merged, c["failed"])
        finally:
            merged.close()


def _run_cluster(ray: Any, fray: Any, rows: list[dict[str, Any]], a: Any, *, entry: Any, tier: str, name: str,
                 root: Path, cap: Any, params: dict[str, Any], api_key: Optional[str], concurrency: int,
                 base_url: Optional[str], clock: Any, workers: int, availability: Any, seed: int) -> dict[str, Any]:
    """The job on the cluster (done ids are skipped by flextier.ray.process); the controller's figures."""
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(200, 2 * workers, len(rows) // 50 + 1)))
    opts: dict[str, Any] = dict(a.extra, seed=seed)  # RunOptions fields, as `flextier run` passes them
    if availability is not None:
        opts["availability"] = availability
    res = fray.process(ds, model=entry.name, request_column="request", id_column="id", deadline=a.deadline,
                       max_cost=cap, job=name, state=str(root), tier=tier, concurrency=concurrency,
                       standard_concurrency=a.standard_concurrency, rpm=a.rpm, tpm=a.tpm,
                       max_tokens=params.get("max_tokens"), temperature=params.get("temperature"),
                       base_url=base_url, api_key=api_key, clock=clock, workers=workers,
                       progress_every=None if a.quiet else 10.0, **opts)
    for _ in res.iter_batches(batch_size=4096, batch_format="pyarrow"):
        pass
    prog: dict[str, Any] = fray.progress(name)
    with contextlib.suppress(Exception):  # this run's controller goes; a rerun starts a fresh one
        ray.kill(fray._HANDLES.pop(name))
    return prog
