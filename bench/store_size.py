"""Store size against the results file, at 50,000 and 1,000,000 items (issue 19: <= 1.2x).

Two ways, both reported:

* ``--real N``: ``flextier run`` on OpenAI against the emulator (calm, zero added latency,
  ``--max-tokens 16``, the ``bench/_harness.write_jobs`` prompts), then the store's bytes on disk
  (``.db`` + ``-wal``) against the results file's.
* synthetic (``--synthetic 50000,1000000``): a million real runs take an hour on 2 CPUs, so the
  store is filled through its own API with what a run writes per item -- the imported request,
  one attempt row, one ledger row, and the output line built by ``jobs/lines.answer_line`` from
  an emulator-shaped chat completion (distinct ids, text and usage per item) -- and the same lines
  are written to a results file. Same rows, same code paths (``import_items``, ``finish``,
  ``flush``), no network: minutes instead of an hour.

    python bench/store_size.py [--real 2000] [--synthetic 50000,1000000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from _harness import emulator_process, write_jobs

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more").split()


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if not p.name.endswith(".lock"))


def real(n: int, tmp: Path) -> dict:
    jobs = write_jobs(tmp / "real.jsonl", n)
    db, out = tmp / "real.db", tmp / "real.out.jsonl"
    with emulator_process("calm", "latency_scale=0") as url:
        subprocess.run([sys.executable, "-m", "flextier", "run", str(jobs), "--model", "openai/gpt-5.4-mini",
                        "--base-url", url + "/v1", "--tier", "flex", "--max-tokens", "16", "--store", str(db),
                        "--out", str(out), "--quiet"], check=True, env={**os.environ, "OPENAI_API_KEY": "bench"})
    return {"items": n, "store_bytes": disk(db), "output_bytes": out.stat().st_size, "how": "real run"}


def synthetic(n: int, tmp: Path) -> dict:
    from flextier.jobs.input import item_from_object
    from flextier.jobs.lines import answer_line
    from flextier.jobs.store import FinishedItem, JobStore

    rng = random.Random(n)
    filler = " ".join(f"w{i}" for i in range(20))
    db, out = tmp / f"syn{n}.db", tmp / f"syn{n}.out.jsonl"
    st = JobStore(db)
    st.create_job(name=f"syn{n}", model="openai/gpt-5.4-mini", tier_mode="flex", created_at=0.0, config={})
    st.import_items((item_from_object({"id": f"r{i}", "prompt": f"item {i}: {filler}"}, i) for i in range(n)),
                    file="<synthetic>", skip_invalid=False)
    t0 = time.time()
    with out.open("w") as f:
        for seq in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(12)).capitalize()
            rid = f"{rng.getrandbits(64):016x}"
            body = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": 1795532403 + seq // 300,
                    "model": "gpt-5.4-mini", "service_tier": "flex", "system_fingerprint": None,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None,
                                                         "annotations": []}, "logprobs": None,
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 16, "total_tokens": 66,
                              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                              "completion_tokens_details": {"reasoning_tokens": rng.randint(0, 12), "audio_tokens": 0,
                                                            "accepted_prediction_tokens": 0,
                                                            "rejected_prediction_tokens": 0}}}
            cost, std = Decimal("0.0000545"), Decimal("0.000109")
            line = answer_line(seq, f"r{seq}", request_id=f"req_{rid}", body=body, tier="flex", attempts=1,
                               cost=cost, standard_cost=std, possibly_billed=False)
            ts = 1795532403.0 + seq / 300
            st.add_attempt(seq, "flex", "ok", 0.2, 200, None, False, ts)
            st.add_ledger(ts, seq, "flex", cost, std, 50, 16)
            st.finish(FinishedItem(seq=seq, state="done", result=line, tier="flex", attempts=1, served_tier="flex",
                                   cost=cost, standard_cost=std, error_class=None, latency=0.2, finished_at=ts))
            f.write(line + "\n")
            if seq % 512 == 511:
                st.flush()
    st.flush()
    st.close()
    return {"items": n, "store_bytes": disk(db), "output_bytes": out.stat().st_size, "how": "synthetic",
            "fill_s": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=int, default=2000)
    ap.add_argument("--synthetic", default="50000,1000000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.real:
            res.append(real(args.real, tmp))
        for n in [int(x) for x in args.synthetic.split(",") if x]:
            res.append(synthetic(n, tmp))
    for r in res:
        r["ratio"] = round(r["store_bytes"] / r["output_bytes"], 3)
        r["store_per_item"] = round(r["store_bytes"] / r["items"])
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print("| items | how | store | results file | store / results | store per item |")
    print("|---|---|---|---|---|---|")
    for r in res:
        print(f"| {r['items']:,} | {r['how']} | {r['store_bytes'] / 1e6:.1f} MB | {r['output_bytes'] / 1e6:.1f} MB | "
              f"**{r['ratio']:.2f}x** | {r['store_per_item']} B |")


if __name__ == "__main__":
    main()
