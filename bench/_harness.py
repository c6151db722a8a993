"""Shared plumbing for the benchmarks: an emulator in its own process, job files, timing.

The emulator runs as a separate process (``python -m flextier emulate``) so that the
client under test and the server do not share one interpreter's GIL; both sides of a
comparison talk to the same emulator instance, one after the other, in one run.
Everything stays on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = float(os.environ.get("FLEXTIER_BENCH_CHILD_TIMEOUT", 3 * 3600))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator_process(profile: str = "calm", *knobs: str, seed: int = 0, time_scale: float = 1.0,
                     start: str | None = None) -> Iterator[str]:
    """Start ``flextier emulate`` on a free loopback port; yield its base URL once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "flextier", "emulate", "--host", "127.0.0.1", "--port", str(port),
           "--profile", profile, "--seed", str(seed), "--time-scale", repr(float(time_scale))]
    if start is not None:
        cmd += ["--start", start]
    for k in knobs:
        cmd += ["--knob", k]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/_emulator/clock", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start in 30 s")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` or ``"1-12"`` (or a mix) as a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def ledger(url: str) -> list[dict]:
    r = httpx.get(f"{url}/_emulator/ledger", timeout=120)
    r.raise_for_status()
    data = r.json()
    return data["rows"] if isinstance(data, dict) and "rows" in data else data


def write_jobs(path: Path, n: int, *, prompt_words: int = 20, max_tokens: int = 16) -> Path:
    """A simple-format job file of ``n`` distinct prompts, streamed to disk."""
    filler = " ".join(f"w{i}" for i in range(prompt_words))
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "prompt": f"item {i}: {filler}", "max_tokens": max_tokens}) + "\n")
    return path


def run_timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one child process (its own ``ru_maxrss``, from wait4).

    Process start-up (interpreter, imports) is inside the wall time, for every command alike.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                             stderr=err, text=True)
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:  # poll, so that a hung child is killed rather than hanging the benchmark
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                raise RuntimeError(f"{cmd[:4]} did not finish in {CHILD_TIMEOUT:.0f} s")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {err.read()[-2000:]}")
    return wall, ru.ru_maxrss


def load_avg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def store_concurrency(store: Path, conc: int) -> dict:
    """flextier's achieved flex concurrency, from its store's attempt rows (start = ts - latency).

    ``peak_inflight``: most attempts in flight at once; ``mean_inflight``: attempt-seconds / span
    (Little's law); ``ramp_s``: seconds from the first send until 90 % of ``conc`` were in flight.
    """
    from flextier.jobs.store import JobStore  # the store owns the job database's SQL

    with JobStore(store, create=False) as st:
        rows = st.flex_attempt_spans()
    if not rows:
        return {}
    ev = sorted([(a, 1) for a, _ in rows] + [(b, -1) for _, b in rows])
    cur = peak = 0
    ramp = None
    for t, d in ev:
        cur += d
        peak = max(peak, cur)
        if ramp is None and cur >= 0.9 * conc:
            ramp = t - ev[0][0]
    span = ev[-1][0] - ev[0][0]
    return {"peak_inflight": peak, "mean_inflight": round(sum(b - a for a, b in rows) / span, 1) if span > 0 else None,
            "ramp_s": None if ramp is None else round(ramp, 2)}
