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
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator_process(profile: str = "calm", *knobs: str, seed: int = 0, time_scale: float = 1.0) -> Iterator[str]:
    """Start ``flextier emulate`` on a free loopback port; yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "flextier", "emulate", "--host", "127.0.0.1", "--port", str(port),
           "--profile", profile, "--seed", str(seed), "--time-scale", str(time_scale)]
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
                if httpx.get(f"{url}/_emulator/stats", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    """Wall time and peak RSS (KiB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {p.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before)
