"""One place that assembles a job: adapter, batch backend, options, runner, job state.

Why: the CLI (:mod:`flextier.cli.run`) and the Python API (:mod:`flextier.jobs.api`) used
to build these four parts each on their own, and drifted (connection pool sizes, when the
batch lane is on). Both now call :func:`build_runner`, so the coming gateway and Ray stage
get the same job from the same settings. The job-state transitions the CLI records
(running, paused, stopped, done) live here too, so every front end writes the same states
with the same fields.

What stays with the caller: opening the store (:func:`flextier.jobs.api.open_job`), the
results file, progress display, signals and exit codes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Optional

from ..errors import UserInputError
from .runner import Runner, RunOptions

# where each provider's key is looked for (Bedrock: boto3's credential chain)
API_KEY_ENV = {"openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
               "anthropic": ("ANTHROPIC_API_KEY",), "bedrock": (), "deepseek": ("DEEPSEEK_API_KEY",)}


@dataclass
class BatchSettings:
    """Where the batch lane may run (Bedrock needs an S3 location and a role; others need none)."""

    s3_uri: Optional[str] = None
    role_arn: Optional[str] = None
    s3_endpoint_url: Optional[str] = None


def find_credentials(provider: str, *, emulate: bool = False, base_url: Optional[str] = None) -> Optional[str]:
    """The key to hand the SDK, checked before anything is sent, so a missing key is one clear line.

    Looked up in the provider's environment variables (``API_KEY_ENV``); Bedrock uses boto3's
    own credential chain (None: let botocore find them). An emulated job gets a placeholder key
    (and placeholder AWS credentials), an explicit ``base_url`` may need none. The key is
    returned, never logged or stored.
    """
    if emulate:
        if provider == "bedrock":
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "emulator")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "emulator")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return "emulator"
    names = API_KEY_ENV.get(provider, ())
    for n in names:
        if os.environ.get(n):
            return os.environ[n]
    if provider == "bedrock":
        try:
            import botocore.session  # boto3's own credential chain, without importing boto3

            if botocore.session.get_session().get_credentials() is not None:
                return None
        except Exception:
            pass
        if base_url:
            return None
        raise UserInputError("no AWS credentials found for Bedrock (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                             "AWS_SECRET_ACCESS_KEY), or rehearse the job with --emulate weekday --time-scale 600",
                             field="--model")
    if base_url:
        return "flextier-no-key"
    raise UserInputError(f"no {' or '.join(names)} in the environment: export it, point --base-url at a "
                         f"compatible endpoint, or rehearse the job for free with --emulate weekday "
                         f"--time-scale 600", field="--model")



def build_adapter(entry: Any, *, base_url: Optional[str], api_key: Optional[str], concurrency: int,
                  standard_concurrency: Optional[int]) -> Any:
    """The provider adapter, with one pooled connection per request either lane may have in flight."""
    from ..providers import get_adapter

    return get_adapter(entry, base_url=base_url, api_key=api_key,
                       max_connections=concurrency + (standard_concurrency or concurrency))


def wants_batch_lane(store: Any, *, tier: str, max_cost: Optional[Decimal]) -> bool:
    """Whether the job may use the provider's batch API.

    A spending cap keeps the job online (a batch cannot be cut off at the cap); otherwise
    ``auto`` and ``batch`` may batch, and any tier must collect batches a previous run opened.
    """
    return max_cost is None and (tier in ("auto", "batch") or bool(store.open_batches()))


def build_batch_backend(entry: Any, store: Any, *, tier: str, max_cost: Optional[Decimal],
                        base_url: Optional[str], api_key: Optional[str],
                        batch: Optional[BatchSettings] = None) -> Any:
    """The batch backend for this job, or None when the job stays online."""
    if not wants_batch_lane(store, tier=tier, max_cost=max_cost):
        return None
    from .batching import make_batch_backend

    b = batch or BatchSettings()
    return make_batch_backend(entry, base_url=base_url, api_key=api_key, s3_uri=b.s3_uri, role_arn=b.role_arn,
                              required=tier == "batch", s3_endpoint_url=b.s3_endpoint_url)


def build_runner(store: Any, entry: Any, *, clock: Any, tier: str, deadline: Optional[float], concurrency: int,
                 standard_concurrency: Optional[int] = None, rpm: Optional[float] = None,
                 tpm: Optional[float] = None, max_cost: Optional[Decimal] = None,
                 params: Optional[dict[str, Any]] = None, base_url: Optional[str] = None,
                 api_key: Optional[str] = None, adapter: Any = None, batch_backend: Any = None,
                 batch_lane: bool = True, batch: Optional[BatchSettings] = None, output: Any = None,
                 on_result: Optional[Callable[..., Any]] = None, input_open: bool = False,
                 **options: Any) -> Runner:
    """Build the adapter (unless given), the batch backend and the options, and the prepared Runner.

    ``batch_lane=False`` keeps the job online whatever the tier (a caller's own adapter, or a
    streamed input whose size is not known). ``options`` are further :class:`RunOptions` fields
    (``ordered``, ``seed``, planner settings).
    """
    if adapter is None:
        if api_key is None:
            api_key = find_credentials(entry.provider, base_url=base_url)
        adapter = build_adapter(entry, base_url=base_url, api_key=api_key, concurrency=concurrency,
                                standard_concurrency=standard_concurrency)
    opts = RunOptions(model=entry, tier_mode=tier, deadline=deadline, concurrency=concurrency,
                      standard_concurrency=standard_concurrency, rpm=rpm, tpm=tpm, max_cost=max_cost,
                      params={} if params is None else params, **options)
    if batch_backend is None and batch_lane:
        batch_backend = build_batch_backend(entry, store, tier=tier, max_cost=max_cost, base_url=base_url,
                                            api_key=api_key, batch=batch)
    runner = Runner(store, adapter, opts, clock=clock, output=output, on_result=on_result,
                    input_open=input_open, batch_backend=batch_backend)
    runner.prepare()
    return runner


# --------------------------------------------------------------------------------------
# job state: the states `flextier status` shows, written the same way by every front end
# --------------------------------------------------------------------------------------

def mark_running(store: Any, clock: Any) -> None:
    """The job starts (or resumes) sending."""
    store.update_job(state="running", started_at=clock.now(), message=None)


def mark_paused(store: Any, message: str) -> None:
    """The job stopped on its own and waits for the user (cap, bad input, endpoint, disk)."""
    store.update_job(state="paused", message=message)


def mark_stopped(store: Any, message: str) -> None:
    """The user stopped the job (signal, Ctrl-C); it resumes where it stopped."""
    store.update_job(state="stopped", message=message)


def mark_done(store: Any, clock: Any) -> None:
    """Every item has an outcome."""
    store.update_job(state="done", finished_at=clock.now(), message=None)


# --------------------------------------------------------------------------------------
# resume: the settings a job started with, under the ones given now
# --------------------------------------------------------------------------------------

def apply_resume_settings(a: Any, job: dict[str, Any], store_path: Any) -> None:
    """Fill every setting not given on resume from the stored job (given settings win).

    ``a`` is the front end's settings object (:class:`flextier.cli.run.RunArgs`: attributes
    that are None when not given). An emulated run goes on as it started (profile, time
    scale, seed) unless told otherwise, and a real endpoint is never replaced by the emulator.
    """
    cfg = job["config"]
    a.file = a.file or job["input_path"]
    a.model = a.model or job["model"]
    a.tier = a.tier or job["tier_mode"]
    a.out = a.out or job["output_path"]
    a.job = job["name"]
    a.store = str(store_path)
    a.prompt_template = a.prompt_template or job["prompt_template"]
    a.ordered = bool(job["ordered"]) if a.ordered is None else a.ordered
    for k in ("concurrency", "standard_concurrency", "rpm", "tpm", "max_tokens", "temperature",
              "batch_s3_uri", "batch_role_arn"):
        if getattr(a, k) is None and cfg.get(k) is not None:
            setattr(a, k, cfg[k])
    if a.max_cost is None and cfg.get("max_cost"):
        a.max_cost = cfg["max_cost"]
    if a.emulate is None and a.base_url is None and cfg.get("emulate"):
        a.emulate = cfg["emulate"]
    if a.emulate and cfg.get("emulate"):
        # the emulated run goes on as it started: its time scale and seed, unless told
        if a.time_scale is None:
            a.time_scale = cfg.get("time_scale")
        if a.seed is None:
            a.seed = cfg.get("seed")
    if a.base_url is None and cfg.get("base_url") and not a.emulate:
        a.base_url = cfg["base_url"]


__all__ = ["BatchSettings", "find_credentials", "build_adapter", "wants_batch_lane", "build_batch_backend", "build_runner",
           "mark_running", "mark_paused", "mark_stopped", "mark_done", "apply_resume_settings", "plan_start",
           "wait_for_start"]


def plan_start(store: Any, entry: Any, clock: Any, *, not_before: Optional[float], start: Optional[str],
               deadline: Optional[float], emulated: bool, params: Optional[dict[str, Any]] = None) -> Optional[float]:
    """Record when the job may start (``run --not-before`` / ``--start auto``) in its store.

    ``--not-before`` wins; ``--start auto`` asks :func:`flextier.history.advice.recommend` for the
    start (the learned flex forecast, or a clock-priced model's off-peak hours) and records it with
    the reason; ``--start now`` clears a stored wait. Neither flag keeps what the store has, so a
    resumed job waits for the same instant. Returns the instant in force (None: start now)."""
    now = clock.now()
    if not_before is not None:
        store.set_not_before(not_before, "--not-before")
    elif start == "now":
        store.set_not_before(None)
    elif start == "auto":
        from ..history import load_forecast
        from ..history.advice import recommend

        from .work import job_token_estimate

        c = store.counts()
        n = max(1, c["pending"] + c.get("inflight", 0))
        in_tok, out_tok = job_token_estimate(store, entry, params)   # the job's own prompts, not a guess
        fc = load_forecast(entry.provider, entry.name, now, emulated=emulated)
        adv = recommend(entry, fc, items=n, input_tokens=in_tok, output_tokens=out_tok, now=now, deadline=deadline)
        store.event(now, "start_advice", {"items": n, "input_tokens": in_tok, "output_tokens": out_tok,
                                          "start": adv.start, "cost_usd": None if adv.cost is None else str(adv.cost),
                                          "why": adv.why})
        store.set_not_before(adv.start if adv.start > now else None, f"--start auto: {adv.why}")
    return store.not_before()[0]


def wait_for_start(store: Any, clock: Any, *, say: Optional[Callable[[str], None]] = None,
                   poll_wall: float = 1.0) -> Optional[float]:
    """Wait, visibly, until the job's stored not-before instant; return it (None: no wait).

    Killable: the wait is plain sleeps of at most ``poll_wall`` wall seconds, so Ctrl-C or a
    signal ends it at once. Resumable: the instant lives in the store (:meth:`JobStore.set_not_before`)
    and the wait writes the clock value it reached (``last_clock``), so ``flextier resume`` (or the
    same command again) waits for the same instant, and an emulated day continues where it stopped.
    """
    nb, why = store.not_before()
    if nb is None:
        return None
    now = clock.now()
    if now >= nb:
        return nb
    scale = float(getattr(clock, "time_scale", 1.0) or 1.0)
    utc = time.strftime("%a %Y-%m-%d %H:%M UTC", time.gmtime(nb))
    store.update_job(message=f"waiting until {utc} ({why})", last_clock=now)
    store.event(now, "waiting", {"until": nb, "why": why})
    if say is not None:
        say(f"flextier: waiting until {utc} ({_human_s(nb - now)} from now; {why}). Ctrl-C stops; "
            "`flextier resume` waits for the same instant")
    last_say = time.monotonic()
    while True:
        now = clock.now()
        if now >= nb:
            break
        time.sleep(max(0.001, min(poll_wall, (nb - now) / scale)))
        store.update_job(last_clock=clock.now())
        if say is not None and time.monotonic() - last_say >= 60.0:
            say(f"flextier: still waiting: {_human_s(nb - clock.now())} to go")
            last_say = time.monotonic()
    store.update_job(message=None)
    store.event(clock.now(), "wait_over", {"until": nb})
    return nb


def _human_s(s: float) -> str:
    s = max(0, int(s))
    h, r = divmod(s, 3600)
    return f"{h}h{r // 60:02d}m" if h else f"{r // 60}m{r % 60:02d}s"
