"""Resume waste: after SIGKILLs on the chaos profile, how many in-flight items are billed twice?

One ``flextier emulate --profile chaos`` process; ``flextier run --base-url`` on OpenAI is
SIGKILLed ``--kills`` times at random points of its sending phase and finally resumed to the
end. After each kill the store's open send records name the items that were in flight. At the
end the emulator's ledger says, per item, how many times it billed it: an item in flight at a
kill and billed more than once was paid twice. Run with the provider store on (default: OpenAI
``store: true`` + item id in ``metadata``, read back on resume) and off
(``--no-provider-store``), side by side. Goal (issue 19): <= 1 % of the in-flight items billed
twice with the store on.

    python bench/resume_waste.py [--items 1000] [--kills 5] [--concurrency 64] [--seed 7] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

from _harness import emulator_process, ledger

MODEL = "openai/gpt-5.4-mini"
ENV = {**os.environ, "OPENAI_API_KEY": "bench"}


def one(url: str, tmp: Path, n: int, kills: int, conc: int, seed: int, store_on: bool) -> dict:
    from flextier.jobs.store import JobStore

    rng = random.Random(seed)
    tag = "on" if store_on else "off"
    job = tmp / f"w-{tag}.jsonl"   # a different file per side: a different job, and different item ids
    job.write_text("".join(json.dumps({"id": f"{tag}{i}", "prompt": f"Fact {i}."}) + "\n" for i in range(n)))
    db, out = tmp / f"w-{tag}.db", tmp / f"w-{tag}.out.jsonl"
    flag = [] if store_on else ["--no-provider-store"]
    run = [sys.executable, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", url + "/v1",
           "--store", str(db), "--out", str(out), "--concurrency", str(conc), "--max-tokens", "30",
           "--tier", "auto", "--deadline", "24h", "-q", *flag]
    resume = [sys.executable, "-m", "flextier", "resume", str(db), "--base-url", url + "/v1", "-q", *flag]
    in_flight: set[str] = set()
    done_kills = 0
    for k in range(kills):
        before = len(ledger(url))
        p = subprocess.Popen(run if not db.exists() else resume, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        t_end = time.time() + 60
        while len(ledger(url)) < before + conc and p.poll() is None and time.time() < t_end:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 1.0))
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        done_kills += 1
        with JobStore(db, create=False) as st:
            seqs = {seq for _, seq, _, _, state in st.send_records() if state == "open"}
            ids = {it["seq"]: it["custom_id"] for it in st.iter_items()}
        in_flight |= {ids[s] for s in seqs}
    time.sleep(0.5)   # let the emulator finish (and bill) what the last kill abandoned
    subprocess.run(resume, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    rows = ledger(url)
    billed = Counter(unquote(r["item"]) for r in rows if r.get("item") and r.get("cost") not in (None, "0")
                     and unquote(r["item"]).startswith(tag))
    twice = sorted(i for i in in_flight if billed[i] > 1)
    with JobStore(db, create=False) as st:
        pb, bound = st.possibly_billed()
        settled = st.settled_sends()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"{tag}{i}" for i in range(n)), "lost or duplicated items"
    return {"provider_store": store_on, "kills": done_kills, "in_flight_at_kills": len(in_flight),
            "billed_twice": len(twice), "share": round(len(twice) / max(1, len(in_flight)), 4),
            "extra_billed_sends": sum(max(0, billed[i] - 1) for i in billed), "possibly_billed_sends": pb,
            "settled_from_provider": settled, "possibly_billed_bound": str(bound)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--time-scale", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = []
    with tempfile.TemporaryDirectory() as d, emulator_process("chaos", seed=args.seed, time_scale=args.time_scale) as url:
        for on in (False, True):
            res.append(one(url, Path(d), args.items, args.kills, args.concurrency, args.seed, on))
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"chaos profile, {args.items} items, concurrency {args.concurrency}, SIGKILL x{args.kills}, then resumed")
    print("| provider store | in flight at the kills | billed twice | share | read back on resume | possibly billed sends |")
    print("|---|---|---|---|---|---|")
    for r in res:
        print(f"| {'on' if r['provider_store'] else 'off'} | {r['in_flight_at_kills']} | {r['billed_twice']} | "
              f"{100 * r['share']:.1f} % | {r['settled_from_provider']} | {r['possibly_billed_sends']} |")


if __name__ == "__main__":
    main()
