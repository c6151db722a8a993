"""Start-up: from process start to the first request on the wire, ``flextier run`` (and peers).

The emulator runs in its own process (``_harness.emulator_process``); in front of it sits a
loopback TCP relay (this process) that stamps the wall time of the first byte of the first
``POST`` it relays. The client under test is spawned with ``--base-url`` at the relay, so
the figure is spawn -> first request sent (interpreter start, imports, input validation,
store creation, SDK client construction), measured from outside, without any hook in the
code under test. ``--importtime`` also prints the heaviest imports of one run
(``python -X importtime``). Target (issue 19): <= 0.5 s.

    python bench/startup.py [--repeat 5] [--importtime] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from _harness import emulator_process, free_port, write_jobs

KEYS = {"OPENAI_API_KEY": "bench"}


class StampRelay:
    """A loopback TCP relay to ``upstream`` that records when the first POST's first byte arrived."""

    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.up_host, self.up_port = u.hostname or "127.0.0.1", u.port or 80
        self.port = free_port()
        self.first_post: float | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.first_post = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await server.serve_forever()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, stamp: Callable[[bytes], None] | None) -> None:
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                if stamp is not None:
                    stamp(data)
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                w.close()
            except Exception:
                pass

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(self.up_host, self.up_port)

        def stamp(data: bytes) -> None:
            if self.first_post is None and b"POST " in data[:16]:
                self.first_post = time.time()

        await asyncio.gather(self._pipe(cr, uw, stamp), self._pipe(ur, cw, None))

    def __enter__(self) -> "StampRelay":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # a daemon thread: it ends with the process


def first_send(relay: StampRelay, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Seconds from spawning ``cmd`` to the first POST reaching the relay (the child runs to its end)."""
    relay.reset()
    t0 = time.time()
    p = subprocess.run(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {p.stderr[-2000:]}")
    if relay.first_post is None:
        raise RuntimeError(f"{cmd[:4]} sent no POST")
    return relay.first_post - t0


def flextier_cmd(jobs: Path, url: str, tmp: Path, extra: tuple[str, ...] = ()) -> list[str]:
    for f in [*tmp.glob("st*.db*"), *tmp.glob("out.jsonl*")]:
        f.unlink()
    return [sys.executable, *extra, "-m", "flextier", "run", str(jobs), "--model", "openai/gpt-5.4-mini",
            "--base-url", url + "/v1", "--tier", "flex", "--out", str(tmp / "out.jsonl"), "--store",
            str(tmp / "st.db"), "--quiet"]


def heaviest_imports(jobs: Path, url: str, tmp: Path, top: int = 15) -> list[tuple[str, float]]:
    """The ``top`` imports by cumulative time (ms) in one ``python -X importtime`` run, top level only."""
    cmd = flextier_cmd(jobs, url, tmp, ("-X", "importtime"))
    p = subprocess.run(cmd, env={**os.environ, **KEYS}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line[len("import time:"):].split("|")
        if not cum.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip(" "))) // 2
        if depth <= 1:
            rows.append((name.strip(), int(cum) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        jobs = write_jobs(tmp / "jobs.jsonl", args.items)
        with emulator_process("calm", "latency_scale=0") as up, StampRelay(up) as relay:
            times = [first_send(relay, flextier_cmd(jobs, relay.url, tmp), KEYS) for _ in range(args.repeat)]
            t0 = time.time()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare = time.time() - t0
            imports = heaviest_imports(jobs, relay.url, tmp) if args.importtime else []
    out = {"flextier_first_send_s": {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
                                      "runs": [round(t, 3) for t in times]},
           "bare_python_s": round(bare, 3), "items": args.items, "load_avg": round(os.getloadavg()[0], 2)}
    if imports:
        out["heaviest_imports_ms"] = imports
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"flextier run: process start -> first request sent: median {out['flextier_first_send_s']['median']:.3f} s "
          f"(min {out['flextier_first_send_s']['min']:.3f}, {args.repeat} runs; bare `python -c pass` {bare:.3f} s; "
          f"load {out['load_avg']})")
    for name, ms in imports:
        print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
