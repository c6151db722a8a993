"""Resume waste on the chaos profile: a SIGKILL costs (almost) nothing twice on OpenAI (issue 19 §3).

A real ``python -m flextier run`` on the chaos profile (resets, truncated bodies, 500/502, slow
first bytes, rate limits) is SIGKILLed twice in its sending phase -- each kill on a condition,
once the emulator's ledger shows a window's worth of this run's requests -- and resumed to the
end. The items in flight at a kill are the store's open send records. Before each resume the
test waits until the emulator has answered (and billed) or dropped every request it received
(each request ends in exactly one ledger row), so the resume looks after the provider is done.

Counted per item from the emulator's ledger: an item in flight at a kill is *paid twice* when it
was billed up to that point and billed again after the resume started (a duplicate from the
client's own retry after a reset, before the kill, is not the kill's doing). With the provider
store on (``store: true`` + item id in ``metadata``, read back on resume, see
``providers/openai/lean.py``) at most 1 % of them may be paid twice; without it about a third
are (``bench/resume_waste.py``). And the "possibly billed" bound holds per item: what the
emulator billed beyond the client's ledger is within the sends the store flagged.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from urllib.parse import unquote

from flextier.jobs.store import JobStore

from hardening_support import MODEL, PY, START, free_port, python_env, run_cli, store_items

N = 400
CONC = 48
KILLS = 2


def _billed(rows: list[dict]) -> Counter:
    return Counter(unquote(r["item"]) for r in rows if r.get("item") and r.get("cost") not in (None, "0"))


def _settle(emu, timeout: float = 30.0) -> None:
    """Until every request the emulator has begun has its one ledger row (the killed run's included)."""
    end = time.monotonic() + timeout
    while emu.engine._seq > len(emu.engine.ledger.rows()):  # noqa: SLF001 - the emulator's request counter
        assert time.monotonic() < end, "the emulator never finished the killed run's requests"
        time.sleep(0.01)


def test_sigkill_on_chaos_pays_at_most_one_percent_twice(tmp_path):
    from flextier.emulator import serve

    job = tmp_path / "w.jsonl"
    job.write_text("".join(json.dumps({"id": f"w{i}", "prompt": f"Fact {i}."}) + "\n" for i in range(N)))
    db, out = tmp_path / "w.db", tmp_path / "w.out.jsonl"
    with serve(profile="chaos", time_scale=300, start=START, seed=11, port=free_port()) as emu:
        base = emu.openai_base_url
        run = [PY, "-m", "flextier", "run", str(job), "--model", MODEL, "--base-url", base, "--store", str(db),
               "--out", str(out), "--concurrency", str(CONC), "--max-tokens", "30", "--tier", "auto",
               "--deadline", "24h", "-q"]
        resume = [PY, "-m", "flextier", "resume", str(db), "--base-url", base, "-q"]
        env = python_env(OPENAI_API_KEY="sk-test-waste")
        kills: list[tuple[set[str], int]] = []   # (items in flight, ledger length when the resume starts)
        for _ in range(KILLS):
            before = len(emu.ledger())
            p = subprocess.Popen(run if not db.exists() else resume, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, cwd=tmp_path)
            end = time.monotonic() + 60
            # kill once this run has a window and a half of requests on the ledger: mid-send, many out
            while len(emu.ledger()) < before + CONC * 3 // 2 and p.poll() is None:
                assert time.monotonic() < end, "the run never got going"
                time.sleep(0.005)
            assert p.poll() is None, f"the run finished before the kill: {p.stderr.read().decode()[-800:]}"
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stderr.close()
            with JobStore(db, create=False) as st:
                seqs = {seq for _, seq, _, _, state in st.send_records() if state == "open"}
                ids = {it["seq"]: it["custom_id"] for it in st.iter_items()}
            _settle(emu)
            kills.append(({ids[s] for s in seqs}, len(emu.ledger())))
        r = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert r.returncode in (0, 1), r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        _settle(emu)
        rows = emu.ledger()

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(f"w{i}" for i in range(N)), "lost or duplicated items"

    in_flight: set[str] = set()
    paid_twice: set[str] = set()
    for items, mark in kills:
        before, after = _billed(rows[:mark]), _billed(rows[mark:])
        in_flight |= items
        paid_twice |= {i for i in items if before[i] and after[i]}
    with JobStore(db, create=False) as st:
        settled = st.settled_sends()
        client_rows = list(st.db.execute("SELECT seq, cost FROM ledger"))
        pb_sends, pb_bound = st.possibly_billed()
    print(f"\nresume waste: {len(in_flight)} in flight at {KILLS} kills, {len(paid_twice)} paid twice, "
          f"{settled} answers read back, {pb_sends} possibly billed sends")
    assert len(in_flight) >= CONC, "the kills found too little in flight to measure"
    assert settled > 0, "no answer was read back from the provider's store"
    assert len(paid_twice) <= 0.01 * len(in_flight), sorted(paid_twice)

    # the "possibly billed" bound, per item
    items = store_items(db)
    by_seq = {it["seq"]: it for it in items}
    cli_n: dict[str, int] = defaultdict(int)
    for seq, _cost in client_rows:
        cli_n[by_seq[seq]["custom_id"]] += 1
    emu_n = _billed(rows)
    for it in items:
        extra = emu_n[it["custom_id"]] - cli_n[it["custom_id"]]
        assert 0 <= extra <= it["possibly_billed"], (it["custom_id"], emu_n[it["custom_id"]], cli_n[it["custom_id"]],
                                                     it["possibly_billed"])
    rc, so, _ = run_cli(["report", str(db)])
    assert rc == 0
    if pb_sends:
        assert f"possibly billed: {pb_sends} sends" in so, so
