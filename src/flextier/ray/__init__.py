"""flextier on Ray Data: one flex window, one deadline and one budget for a whole cluster.

``flextier.ray.process(ds, model=..., prompt_column=..., deadline=..., max_cost=..., job=...,
state=...)`` returns a Dataset with the input columns plus ``response``, ``text``,
``served_tier``, ``cost_usd``, ``standard_cost_usd``, ``attempts`` and ``error`` (and ``id``).

How (README, "Scaling out with Ray"): each batch of rows runs as an ordinary flextier job on a
worker actor (:mod:`flextier.ray.worker`); one named controller actor per job
(:mod:`flextier.ray.controller`) owns the flex AIMD window, the budget leases and the deadline
planner for the whole cluster; results are durable as they finish (:mod:`flextier.ray.state`),
so a rerun of the same job skips what is done and pays for nothing twice.
Needs ``pip install 'flextier[ray]'`` (Ray Data, not ``ray[llm]``).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

__all__ = ["process", "progress", "summary", "controller_of"]

NAMESPACE = "flextier"
_HANDLES: dict[str, Any] = {}   # the driver holds each job's controller: a non-detached actor lives while it is referenced


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is not installed
        from ..errors import UserInputError

        raise UserInputError("flextier.ray needs Ray Data: pip install 'flextier[ray]'", field="ray") from exc
    return ray


def _input_spec(columns: list[str], *, prompt_column: str | None, template: str | None,
                messages_column: str | None, request_column: str | None, id_column: str | None) -> dict[str, Any]:
    """Check the input mode against the Dataset's columns, before anything runs (one line, exit 2)."""
    from ..errors import UserInputError
    from ..jobs.input import PromptTemplate

    modes = [m for m in (prompt_column or template, messages_column, request_column) if m]
    if len(modes) != 1:
        raise UserInputError("give exactly one of prompt_column (optionally with template), messages_column or "
                             "request_column", field="prompt_column")
    if template is not None:
        PromptTemplate(template).check_columns(columns, "the dataset")
    for name, col in (("prompt_column", prompt_column), ("messages_column", messages_column),
                      ("request_column", request_column)):
        if col is not None and col not in columns:
            raise UserInputError(f"{col!r} is not a column (columns: {', '.join(columns)[:300]})", field=name)
    if id_column is not None and id_column not in columns:
        id_column = None  # ids then come from a stable hash of each request
    return {"prompt_column": prompt_column, "template": template, "messages_column": messages_column,
            "request_column": request_column, "id_column": id_column}


def controller_of(job: str) -> Any:
    """The job's controller actor (while the driver that started the job runs)."""
    from .controller import controller_name

    return _ray().get_actor(controller_name(job), namespace=NAMESPACE)


def progress(job: str) -> dict[str, Any]:
    """The controller's figures: done, tiers, spend, saving, deadline margin."""
    return _ray().get(controller_of(job).progress.remote())


def summary(job: str) -> str:
    """flextier's one-line progress summary of a running Ray job."""
    return _ray().get(controller_of(job).summary.remote())


def _printer(job: str, every: float, stream: Any) -> threading.Thread:
    """Print the controller's one-line summary every ``every`` wall seconds while it changes."""
    def loop() -> None:
        last = None
        while True:
            time.sleep(every)
            try:
                line = summary(job)
            except Exception:
                return
            if line != last:
                print(f"flextier: {line}", file=stream, flush=True)
                last = line

    t = threading.Thread(target=loop, name=f"flextier-progress-{job}", daemon=True)
    t.start()
    return t


def process(ds: Any, *, model: str, prompt_column: str | None = None, template: str | None = None,
            messages_column: str | None = None, request_column: str | None = None, id_column: str | None = "id",
            deadline: Any = None, max_cost: Any = None, job: str, state: str | os.PathLike[str],
            tier: str = "auto", concurrency: int = 256, standard_concurrency: int | None = None,
            rpm: float | None = None, tpm: float | None = None, max_tokens: int | None = None,
            temperature: float | None = None, base_url: str | None = None, api_key: str | None = None,
            clock: Any = None, workers: int = 2, batch_size: int = 100, num_cpus: float = 0.25,
            progress_every: float | None = 10.0, **runner_opts: Any) -> Any:
    """Run an LLM request per row of ``ds`` as one flextier job; returns the output Dataset (lazy).

    ``deadline``/``max_cost``/``tier``/``concurrency``/``standard_concurrency``/``rpm``/``tpm``
    mean what they mean for ``flextier run``, for the job as a whole (``concurrency`` caps the
    cluster's flex window; ``rpm``/``tpm`` are the job's, held by the controller's buckets). ``state`` is a
    directory every node can reach; running the same ``job`` again resumes it. ``clock``: the
    emulator's (``emu.clock``) when rehearsing against a local emulator. ``workers`` actors,
    ``num_cpus`` each.
    """
    ray = _ray()
    from ..catalog import default_catalog
    from ..errors import UserInputError
    from ..jobs.api import TIER_CHOICES, parse_deadline, parse_money
    from ..jobs.clock import WallClock
    from .controller import JobController, controller_name
    from .state import JobState
    from .controller import job_clock
    from .worker import FlextierWorker, _strip, final_rows

    if tier not in TIER_CHOICES or tier == "batch":
        raise UserInputError("tier must be auto, flex or standard on Ray (the batch lane is not distributed yet)",
                             field="tier")
    if not isinstance(workers, int) or workers < 1:
        raise UserInputError(f"workers must be an integer >= 1, got {workers!r}", field="workers")
    entry = default_catalog().resolve(model)
    spec = _input_spec(list(ds.columns()), prompt_column=prompt_column, template=template,
                       messages_column=messages_column, request_column=request_column, id_column=id_column)
    cap = parse_money(max_cost, "max_cost") if max_cost is not None else None
    if cap is not None:
        from ..policy.budget import require_known_prices

        require_known_prices(entry, ("flex", "standard") if tier == "auto" else (tier,))
    emulated = clock is not None and not isinstance(clock, WallClock) and base_url is not None
    clock_spec = {"kind": "emulator", "base_url": base_url} if emulated else {"kind": "wall"}
    clk = job_clock(clock_spec) if emulated else (clock or WallClock())
    now = clk.now()
    if "://" not in str(state):
        state = os.path.abspath(state)  # the workers' working directory is not the driver's
    st = JobState(state, job)
    meta = st.meta()
    if meta is None or meta.get("model") != entry.name:
        if meta is not None:
            raise UserInputError(f"job {job!r} was started with model {meta['model']}; use another job name",
                                 field="model")
        dl = parse_deadline(deadline, now, utc=emulated, field="deadline")
        meta = {"job": job, "model": entry.name, "tier": tier, "created_at": now, "deadline": dl,
                "deadline_spec": None if deadline is None else str(deadline),
                "clock_domain": clock_spec["kind"], "config": {"max_cost": None if cap is None else str(cap)}}
        st.write_meta(meta)
    elif deadline is not None and str(deadline) != meta.get("deadline_spec"):
        meta["deadline"] = parse_deadline(deadline, now, utc=emulated, field="deadline")
        meta["deadline_spec"] = str(deadline)
        st.write_meta(meta)
    dl = meta["deadline"]
    # a rerun: publish what dead runs answered, then skip every published id
    def salvaged(store: Any, table: Any) -> Any:
        rows, m = final_rows(store, table, entry, id_column="_flextier_id")
        return _strip(rows, "_flextier_id", spec), m

    st.salvage(salvaged)
    done = st.done_ids(spec.get("id_column") or "id")
    spent0, pb0 = st.spend()
    total = ds.count()
    std_conc = standard_concurrency or concurrency
    params = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    ctl = ray.remote(JobController).options(
        name=controller_name(job), namespace=NAMESPACE, get_if_exists=True, num_cpus=0,
        max_concurrency=1).remote(
        job=job, model=entry.name, total=total, done0=min(len(done), total), deadline=dl, tier=tier,
        concurrency=concurrency, std_concurrency=std_conc, max_cost=None if cap is None else str(cap),
        spent0=str(spent0), possibly_billed0=str(pb0), clock_spec=clock_spec, rpm=rpm, tpm=tpm,
        planner_opts={k: runner_opts[k] for k in ("availability", "changeover_delay", "margin", "tick",
                                                   "assumed_standard_latency", "flex_timeout") if k in runner_opts})
    _HANDLES[job] = ctl
    ray.get(ctl.progress.remote())  # started (and its clock synced) before any worker asks it
    cfg = {"job": job, "model": entry.name, "state": str(state), "spec": spec, "tier": tier, "deadline": dl,
           "deadline_spec": meta.get("deadline_spec"), "clock": clock_spec, "base_url": base_url,
           "api_key": api_key, "concurrency": concurrency, "std_concurrency": std_conc,
           "rpm": rpm, "tpm": tpm,  # ceilings for the job: the controller's buckets hold them
           "max_cost": None if cap is None else str(cap), "params": params, "done_ids": sorted(done),
           "runner_opts": {k: v for k, v in runner_opts.items() if k != "availability"}}
    from ray.data import ActorPoolStrategy

    # one batch at a time per actor (Ray Data's default): the controller splits the flex window and the
    # standard concurrency among the batches running now, so a batch's tail does not cost the job any
    out = ds.map_batches(FlextierWorker, fn_constructor_kwargs={"cfg": cfg}, batch_size=batch_size,
                         batch_format="pyarrow", compute=ActorPoolStrategy(size=workers), num_cpus=num_cpus)
    prior = st.part_paths() if done else []
    if prior:
        out = ray.data.read_parquet(prior).union(out)
    if progress_every:
        _printer(job, progress_every, sys.stderr)
    return out
