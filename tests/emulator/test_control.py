"""Control plane, faults, disconnect billing, preemption, determinism and the CLI."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from flextier.emulator import ScaledClock, serve
from flextier.emulator.clients import async_openai_client, openai_client

CHAT = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_public_interface_and_clock(calm):
    assert calm.openai_base_url == calm.url + "/v1"
    assert calm.gemini_base_url == calm.bedrock_endpoint_url == calm.anthropic_base_url == calm.url
    r = httpx.get(calm.url + "/_emulator/clock").json()
    assert r["time_scale"] == calm.clock.time_scale
    assert abs(r["now"] - calm.clock.now()) < 60 * calm.clock.time_scale


def test_scaled_clock():
    c = ScaledClock(600, "2026-11-24T15:00")
    t0 = c.now()
    c.sleep(60)                       # 0.1 s wall
    assert 55 < c.now() - t0 < 120
    asyncio.run(c.asleep(60))
    assert c.now() - t0 > 110


def test_profile_switch_over_http_and_api(calm):
    c = openai_client(calm)
    c.chat.completions.create(**CHAT, service_tier="flex")
    r = httpx.post(calm.url + "/_emulator/profile", json={"profile": "outage"})
    assert r.status_code == 200 and r.json()["profile"] == "outage"
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(**CHAT, service_tier="flex")
    calm.set_profile("calm")
    c.chat.completions.create(**CHAT, service_tier="flex")
    bad = httpx.post(calm.url + "/_emulator/profile", json={"knobs": {"no_such_knob": 1}})
    assert bad.status_code == 400
    st = calm.stats()
    assert st["by_provider"]["openai"]["flex"] == {"ok": 2, "shed": 1}
    assert httpx.get(calm.url + "/_emulator/stats").json()["by_outcome"] == st["by_outcome"]
    assert httpx.get(calm.url + "/_emulator/ledger").json() == calm.ledger()


@pytest.mark.parametrize("knob,exc,outcome", [
    ("fault_500_p", openai.InternalServerError, "fault:500"),
    ("fault_502_p", openai.InternalServerError, "fault:502"),
    ("fault_reset_p", openai.APIConnectionError, "fault:reset"),
])
def test_single_faults(emulator, knob, exc, outcome):
    emu = emulator("calm", **{knob: 1.0})
    with pytest.raises(exc):
        openai_client(emu).chat.completions.create(**CHAT)
    row, = emu.ledger()
    assert row["outcome"] == outcome
    assert (row["cost"] != "0") == (outcome == "fault:reset")     # reset after service is billed


def test_truncated_stream(emulator):
    emu = emulator("calm", fault_truncate_p=1.0)
    stream = openai_client(emu).chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(ch.usage is None for ch in chunks)          # usage never arrived
    assert emu.ledger()[0]["outcome"] == "fault:truncated"


def test_slow_first_byte(emulator):
    emu = emulator("calm", fault_slow_first_byte_p=1.0, slow_first_byte_s=3.0, time_scale=1.0, latency_scale=0)
    with pytest.raises(openai.APITimeoutError):
        openai_client(emu, timeout=0.5).chat.completions.create(**CHAT)


def test_client_gone_during_service_is_billed_but_not_while_queued(emulator):
    emu = emulator("calm", time_scale=10.0, ttft_s=5.0)        # 0.5 s wall of service
    with pytest.raises(openai.APITimeoutError):
        openai_client(emu, timeout=0.3).chat.completions.create(**CHAT, service_tier="flex")
    deadline = time.time() + 5
    while not emu.ledger() and time.time() < deadline:
        time.sleep(0.05)
    row, = emu.ledger()
    assert row["outcome"] == "ok_client_gone" and float(row["cost"]) > 0

    sat = emulator("peak", burst_sigma=0.0, constant_rho=0.5, slots=10, time_scale=10.0, ttft_s=20.0,
                   w_max_s=1e6)
    c = openai_client(sat, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):   # occupies the only flex slot (0.5 + 1/10 = theta_admit)
        c.chat.completions.create(**CHAT, service_tier="flex")
    with pytest.raises(openai.APITimeoutError):   # waits in the queue, then leaves
        c.chat.completions.create(**{**CHAT, "messages": [{"role": "user", "content": "2"}]}, service_tier="flex")
    deadline = time.time() + 5
    while not sat.ledger() and time.time() < deadline:
        time.sleep(0.05)
    row, = sat.ledger()               # the one still in service has not finished yet
    assert row["outcome"] == "client_gone_queued" and row["cost"] == "0"


def test_queue_then_dispatch_and_preemption(emulator):
    # rho 0.55, K 10: one flex slot under theta_admit. A holds it; B queues until the load drops.
    emu = emulator("peak", burst_sigma=0.0, constant_rho=0.55, slots=10, time_scale=100.0, ttft_s=3000.0,
                   w_max_s=1e6)

    async def go():
        c = async_openai_client(emu)
        a = asyncio.ensure_future(c.chat.completions.create(**CHAT, service_tier="flex"))
        await asyncio.sleep(0.3)
        b = asyncio.ensure_future(c.chat.completions.create(
            **{**CHAT, "messages": [{"role": "user", "content": "b"}]}, service_tier="flex"))
        await asyncio.sleep(0.3)
        pool = emu.stats()["pools"]["openai/gpt-5.4-mini"]
        assert (pool["running"], pool["queued"]) == (1, 1)
        emu.set_knobs(constant_rho=0.2, ttft_s=1.0)
        r = await b
        a.cancel()
        await c.close()
        return r

    r = asyncio.run(go())
    assert r.service_tier == "flex"
    row = next(x for x in emu.ledger() if x["outcome"] == "ok")
    assert row["queue_wait_s"] > 10

def test_preemption_fail_mode(emulator):
    pre = emulator("calm", time_scale=10.0, ttft_s=30.0, preempt_mode="fail")

    async def go2():
        c = async_openai_client(pre)
        task = asyncio.ensure_future(c.chat.completions.create(**CHAT, service_tier="flex"))
        await asyncio.sleep(0.5)
        pre.set_knobs(constant_rho=1.2)             # standard demand takes every slot
        with pytest.raises(openai.InternalServerError) as ei:
            await task
        await c.close()
        return ei.value

    err = asyncio.run(go2())
    assert err.status_code == 503
    assert pre.ledger()[0]["outcome"] == "preempted" and pre.ledger()[0]["cost"] == "0"


def test_same_seed_same_outcomes():
    def run(seed):
        # time_scale 1: all 40 requests fall in the same emulated minute of the seeded load
        with serve("chaos", seed=seed, time_scale=1.0, latency_scale=0, fault_slow_first_byte_p=0) as emu:
            c = openai_client(emu)
            for i in range(40):
                try:
                    c.chat.completions.create(**{**CHAT, "messages": [{"role": "user", "content": str(i)}]},
                                              service_tier="flex")
                except (openai.APIError, openai.APIConnectionError):
                    pass
            return [(r["outcome"], r["output_tokens"]) for r in emu.ledger()]
    a, b = run(11), run(11)
    assert a == b
    assert len({o for o, _ in a}) > 1          # chaos produced more than one kind of outcome


def test_cli_emulate_prints_urls_and_rejects_bad_flags(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "flextier", "emulate", "--profile", "stormy"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--profile" in bad.stderr and "Traceback" not in bad.stderr
    bad2 = subprocess.run([sys.executable, "-m", "flextier", "emulate", "--knob", "nope=1"],
                          capture_output=True, text=True, timeout=60)
    assert bad2.returncode == 2 and "nope" in bad2.stderr
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"profile": "outage", "knobs": {"openai_flex_code": "flex_unavailable"}}))
    proc = subprocess.Popen([sys.executable, "-m", "flextier", "emulate", "--port", "0", "--profile-file", str(pf),
                             "--knob", "latency_scale=0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "profile=outage" in lines[0]
        url = lines[1].split()[-1]
        assert url.endswith("/v1")
        r = httpx.post(url + "/chat/completions", json={**CHAT, "service_tier": "flex"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "flex_unavailable"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_availability_forecast_follows_the_daily_curve():
    """The forecast the CLI hands the planner under --emulate: more flex headroom at night than at the
    15-16 h peak, never negative, and it follows a profile switch."""
    from flextier.emulator import serve
    from flextier.emulator.clock import parse_start

    with serve(profile="weekday", time_scale=1000) as emu:
        f = emu.availability_forecast()
        night, peak = f(parse_start("2026-11-24T03:00")), f(parse_start("2026-11-24T15:30"))
        assert night > peak >= 0.0
        emu.set_profile("outage")
        assert f(parse_start("2026-11-24T03:00")) != night
