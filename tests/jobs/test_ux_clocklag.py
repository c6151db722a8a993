"""Clock lag under a high time scale: measured, reported with a lower scale, and its start-up causes gone."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from flextier.jobs import clocklag
from flextier.jobs.clocklag import LagMonitor, LagSummary, assess, describe, suggest_scale
from flextier.jobs.report import build_report, format_report
from flextier.providers.base import tls_context


def test_monitor_weights_lag_by_requests_in_flight():
    m = LagMonitor(600, interval=0.05)
    m.record(0.0, inflight=0)       # idle and on time
    m.record(0.0, inflight=1)
    m.record(0.45, inflight=50)     # a stall while 50 requests waited
    s = m.summary()
    assert s.samples == 3 and s.max_wall == 0.45 and s.p50_wall == 0.0
    assert abs(s.mean_wall - 0.45 * 25 / 25.05) < 1e-9   # the stall dominates: it is what requests waited through
    assert abs(s.mean_emulated - s.mean_wall * 600) < 1e-9


async def test_monitor_measures_a_blocked_loop():
    t = [0.0]
    m = LagMonitor(100, interval=0.01, wall=lambda: t[0])
    m.start()
    await asyncio.sleep(0)          # the sampler takes its start time
    t[0] += 0.01 + 0.2              # the loop was busy 200 ms past the wake-up
    await asyncio.sleep(0.03)
    s = await m.stop()
    assert s is not None and abs(s.max_wall - 0.2) < 1e-9


def test_assess_flags_distortion_and_suggests_a_lower_scale():
    big = LagSummary(time_scale=600, samples=20, mean_wall=0.2, p50_wall=0.1, p90_wall=0.3, max_wall=0.5)
    a = assess(big, latency_p50=207.0)            # the figure
    assert a is not None and a["share"] > 0.5 and a["suggested_scale"] < 600
    assert "--time-scale" in describe(a) and "x600" in describe(a)
    tiny = LagSummary(time_scale=10, samples=20, mean_wall=0.001, p50_wall=0.001, p90_wall=0.001, max_wall=0.002)
    assert assess(tiny, latency_p50=4.0) is None  # 15 ms of 4 s: under the 5% threshold
    assert assess(big, None) is None and assess(None, 4.0) is None
    assert assess(LagSummary(1, 5, 0.5, 0.5, 0.5, 0.5), 1.0) is None  # x1: the lag is real time, nothing to say
    assert suggest_scale(600, 10.0) == 2.0 and suggest_scale(600, 0.1) == 300.0


def test_report_states_the_lag_and_keeps_it(make_store):
    st = make_store(2)
    st.db.execute("UPDATE items SET state = 'done', served_tier = 'standard', finished_at = 10, latency = 200")
    st.add_attempt(0, "standard", "ok", 207.0, 200, None, False, 10.0)
    clocklag.record(st, LagSummary(600, 30, 0.2, 0.1, 0.3, 0.5), 11.0)
    r = build_report(st)
    assert r["clock_lag"]["time_scale"] == 600 and "clock lag: at x600" in format_report(r)


def test_a_run_records_its_lag(simple_jobs, tmp_path, monkeypatch):
    from flextier.cli import main
    from flextier.jobs.store import JobStore

    monkeypatch.chdir(tmp_path)
    assert main(["run", str(simple_jobs(5)), "--model", "openai/gpt-5.4-mini", "--emulate", "calm",
                 "--time-scale", "200", "--quiet"]) == 0
    (db,) = (tmp_path / ".flextier").glob("jobs-*.db")  # jobs-<hash of path and content>
    with JobStore(db, create=False) as st:
        lag = clocklag.latest(st)
    assert lag is not None and lag.time_scale == 200 and lag.samples >= 1


def test_plain_http_endpoints_load_no_ca_bundle():
    def boom():
        raise AssertionError("the CA bundle was loaded for a plain-http endpoint")
    ctx = tls_context("http://127.0.0.1:8787/v1", boom)
    assert ctx.verify_mode.name == "CERT_REQUIRED" and ctx.cert_store_stats()["x509_ca"] == 0  # fails closed
    assert tls_context("https://api.openai.com/v1", lambda: "real") == "real"
    assert tls_context(None, lambda: "real") == "real"


def test_sdk_and_tls_load_before_the_emulated_clock(tmp_path):
    """At x600 the SDK import (~1.5 s) and the CA bundle (0.1-0.7 s) cost 15-25 emulated minutes
    before the first request (a 10-minute deadline missed): both must happen off the emulated clock."""
    script = textwrap.dedent(f"""
        import json, ssl, sys
        seen = {{}}
        loads = [0]
        real = ssl.SSLContext.load_verify_locations
        def counting(self, *a, **k):
            loads[0] += 1
            return real(self, *a, **k)
        ssl.SSLContext.load_verify_locations = counting
        import flextier.emulator as emu
        real_serve = emu.serve
        def serve(*a, **k):
            # the job path's HTTP stack (httpx2 under providers.openai.lean; the openai SDK is no
            # longer imported on it at all, issue 19) is loaded before the clock starts
            seen["sdk_loaded_first"] = "flextier.providers.openai.lean" in sys.modules and "httpx2" in sys.modules
            return real_serve(*a, **k)
        emu.serve = serve
        from flextier.cli import main
        open("j.jsonl", "w").write('{{"id": "a", "prompt": "hi"}}\\n')
        rc = main(["run", "j.jsonl", "--model", "openai/gpt-5.4-mini", "--emulate", "calm", "--time-scale", "600",
                   "--quiet"])
        print(json.dumps({{"rc": rc, "ca_loads": loads[0], **seen}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    res = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert res == {"rc": 0, "ca_loads": 0, "sdk_loaded_first": True}, (res, out.stderr[-2000:])
