"""flextier against its fastest peer (flexllm) and the plain SDK loop, on one emulator, in one run.

Same emulator process (calm profile, zero added latency, so the client's own cost is what is
measured), same 2,000-request job file, same concurrency, flex tier on every side:

* ``flexllm`` 0.17.10: ``LLMClient.chat_batch`` with its JSONL checkpoint (``bench/peers_flexllm.py``);
* ``flextier run --tier auto --deadline 24h`` with its SQLite store;
* the plain ``AsyncOpenAI`` loop of ``bench/raw_baseline.py`` (semaphore + gather + JSONL).

Each side is a child process timed from spawn to exit (start-up included): wall seconds,
client CPU seconds (user + system, from ``wait4``), CPU per request and peak RSS; medians of
``--repeat`` runs, the order rotating between rounds. Also start-up: spawn -> first request on
the wire (``bench/startup.py``'s relay) for flextier and flexllm. flexllm needs aiohttp, which
would change which HTTP stack google-genai picks in the test suite, so it lives in its own venv:

    python -m venv --system-site-packages .venv-peers && .venv-peers/bin/pip install 'flexllm==0.17.10'
    python bench/peers.py [--requests 2000] [--concurrency 128,256] [--repeat 3] [--flexllm-python .venv-peers/bin/python] [--json]
    python bench/peers.py --sides flextier --providers gemini,bedrock   # per-provider client CPU, side by side
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, emulator_process, ledger, load_avg, write_jobs
from startup import StampRelay

MODEL, WIRE = "openai/gpt-5.4-mini", "gpt-5.4-mini"
KEYS = {"OPENAI_API_KEY": "bench", "GEMINI_API_KEY": "bench", "GOOGLE_API_KEY": "bench",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
#: ``--providers``: the flextier side on each provider's path, same job and emulator (issue 19:
#: Gemini and Bedrock within 1.2x OpenAI's client CPU per request). Sides are named
#: ``flextier-gemini`` etc.; plain ``flextier`` is OpenAI.
PROVIDER_MODELS = {"openai": MODEL, "gemini": "gemini/gemini-3-flash", "bedrock": "bedrock/nova-pro"}


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Wall s, CPU s (user + sys) and peak RSS (MB) of one child, from ``wait4``."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({rc}): {p.stderr.read()[-2000:] if p.stderr else ''}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def side_cmd(side: str, url: str, jobs: Path, tmp: Path, conc: int, flexllm_py: str) -> list[str]:
    for f in tmp.glob("out-*"):
        f.unlink()
    for f in tmp.glob("st*.db*"):
        f.unlink()
    if side == "flexllm":
        return [flexllm_py, str(ROOT / "bench" / "peers_flexllm.py"), url + "/v1", str(jobs), str(tmp / "out-fl.jsonl"),
                WIRE, str(conc)]
    if side.startswith("flextier"):
        provider = side.partition("-")[2] or "openai"
        return [sys.executable, "-m", "flextier", "run", str(jobs), "--model", PROVIDER_MODELS[provider],
                "--base-url", url + ("/v1" if provider == "openai" else ""),
                "--tier", "auto", "--deadline", "24h", "--concurrency", str(conc), "--out", str(tmp / "out-ft.jsonl"),
                "--max-tokens", "16", "--store", str(tmp / "st.db"), "--quiet"]
    return [sys.executable, str(ROOT / "bench" / "raw_baseline.py"), "openai", url, str(jobs), str(tmp / "out-raw.jsonl"),
            WIRE, str(conc)]


def first_send_s(relay: StampRelay, cmd: list[str]) -> float:
    relay.reset()
    t0 = time.time()
    subprocess.run(cmd, env={**os.environ, **KEYS}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    assert relay.first_post is not None
    return relay.first_post - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", default="128,256")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--flexllm-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--sides", default="flexllm,flextier,raw")
    ap.add_argument("--providers", default="",
                    help="also run the flextier side on these providers' paths, e.g. gemini,bedrock")
    ap.add_argument("--marginal", type=int, default=100,
                    help="with --providers: also run a job of this many requests; CPU per request is then "
                         "(CPU(full) - CPU(small)) / (requests - small), start-up (google-genai, botocore "
                         "imports) left out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sides = args.sides.split(",") + [f"flextier-{p}" for p in args.providers.split(",") if p and p != "openai"]
    out: dict = {"requests": args.requests, "repeat": args.repeat, "load_avg_start": load_avg(), "runs": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        jobs = write_jobs(tmp / "jobs.jsonl", args.requests)
        small = write_jobs(tmp / "small.jsonl", 20)
        marg = write_jobs(tmp / "marginal.jsonl", args.marginal) if args.providers else None
        with emulator_process("calm", "latency_scale=0") as url:
            for conc in [int(c) for c in args.concurrency.split(",")]:
                runs: dict[str, list[dict]] = {s: [] for s in sides}
                for r in range(args.repeat):
                    order = sides[r % len(sides):] + sides[:r % len(sides)]
                    for side in order:
                        n0 = len(ledger(url))
                        m = run_measured(side_cmd(side, url, jobs, tmp, conc, args.flexllm_python), KEYS)
                        rows = ledger(url)[n0:]
                        m["billed"] = len(rows)
                        m["flex_share"] = round(sum(1 for x in rows if x.get("served_tier") == "flex") / max(1, len(rows)), 3)
                        if marg is not None:
                            m["cpu_small_s"] = run_measured(side_cmd(side, url, marg, tmp, conc, args.flexllm_python),
                                                            KEYS)["cpu_s"]
                        runs[side].append(m)
                out["runs"][conc] = {s: {"wall_s": statistics.median(x["wall_s"] for x in v),
                                         "cpu_s": statistics.median(x["cpu_s"] for x in v),
                                         "rss_mb": statistics.median(x["rss_mb"] for x in v),
                                         "billed": [x["billed"] for x in v], "flex_share": v[-1]["flex_share"],
                                         "marginal_ms": statistics.median(
                                             1000 * (x["cpu_s"] - x["cpu_small_s"]) / (args.requests - args.marginal)
                                             for x in v) if marg is not None else None,
                                         "all": v} for s, v in runs.items()}
            with StampRelay(url) as relay:
                out["first_send_s"] = {
                    s: statistics.median(first_send_s(relay, side_cmd(s, relay.url, small, tmp, 8, args.flexllm_python))
                                         for _ in range(args.repeat)) for s in sides if s in ("flexllm", "flextier")}
    out["load_avg_end"] = load_avg()
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    n = args.requests
    print(f"{n} requests, calm, zero added latency, median of {args.repeat} (load {out['load_avg_start']} -> "
          f"{out['load_avg_end']})")
    print("| concurrency | tool | wall s | req/s | client CPU s | CPU ms/request | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for conc, res in out["runs"].items():
        for s, v in res.items():
            print(f"| {conc} | {s} | {v['wall_s']:.2f} | {n / v['wall_s']:.0f} | {v['cpu_s']:.2f} | "
                  f"{1000 * v['cpu_s'] / n:.2f} | {v['rss_mb']:.0f} MB |")
        if "flexllm" in res and "flextier" in res:
            a, b = res["flextier"], res["flexllm"]
            print(f"  flextier / flexllm at {conc}: wall {a['wall_s'] / b['wall_s']:.2f}x, CPU {a['cpu_s'] / b['cpu_s']:.2f}x, "
                  f"RSS {a['rss_mb'] / b['rss_mb']:.2f}x")
        for s in res:
            if s.startswith("flextier-") and "flextier" in res:
                a, b = res[s], res["flextier"]
                line = f"  {s} / flextier (OpenAI) CPU at {conc}: whole run {a['cpu_s'] / b['cpu_s']:.2f}x"
                if a["marginal_ms"] is not None:
                    line += (f"; per request past start-up {a['marginal_ms']:.2f} / {b['marginal_ms']:.2f} ms = "
                             f"{a['marginal_ms'] / b['marginal_ms']:.2f}x")
                print(line)
    for s, t in out["first_send_s"].items():
        print(f"start-up (spawn -> first request sent) {s}: {t:.3f} s")


if __name__ == "__main__":
    main()
