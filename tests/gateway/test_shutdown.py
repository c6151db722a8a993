"""Graceful shutdown (issue 15 "Operations"): SIGTERM to a real ``flextier serve`` process drains.

The gateway runs as its own process (uvicorn on 127.0.0.1, as an operator starts it) in front of
the test emulator, slowed so each call takes about a second. With calls in flight (seen in
``/healthz``, not guessed with a sleep) it gets SIGTERM: from then on a new connection is
refused, every call already in flight still completes with 200, and each is in the gateway's
ledger with the emulator's cost.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import pytest

from flextier.gateway.ledger import Ledger

MSG = [{"role": "user", "content": "Tell me something."}]
N = 4


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_in_flight_calls_then_refuses(emu, tmp_path):
    ups = emu.base_urls()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[upstreams]\nopenai = "{ups["openai"]}"\n')
    db = tmp_path / "gw.db"
    proc = subprocess.Popen([sys.executable, "-m", "flextier", "serve", "--port", "0", "--config", str(cfg),
                             "--ledger", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FLEXTIER_HISTORY": "off"})
    try:
        first = proc.stdout.readline()
        assert "flextier gateway on http://127.0.0.1:" in first, first + proc.stderr.read()
        url = first.split(" on ", 1)[1].split()[0]
        deadline = time.monotonic() + 20
        while True:   # the banner is printed just before uvicorn binds
            try:
                httpx.get(url + "/healthz", timeout=2)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.05)
        emu.set_profile("calm", latency_scale=2.0)     # ~1 s per call (0.4 s first token + 10 tokens) x 2
        before = len(emu.ledger())
        results: list[httpx.Response | BaseException] = []

        def call() -> None:
            try:
                results.append(httpx.post(url + "/v1/chat/completions", timeout=60,
                                           headers={"Authorization": "Bearer sk-caller"},
                                           json={"model": "gpt-5.4", "messages": MSG, "max_tokens": 10}))
            except BaseException as e:  # noqa: BLE001 - asserted below
                results.append(e)

        threads = [threading.Thread(target=call) for _ in range(N)]
        for t in threads:
            t.start()
        while httpx.get(url + "/healthz", timeout=5).json()["in_flight"] < N:
            assert time.monotonic() < deadline + 20 and not results, results
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        refused_while_draining = None
        while refused_while_draining is None:
            try:
                httpx.get(url + "/healthz", timeout=2)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                refused_while_draining = len(results) < N
            assert time.monotonic() < deadline + 40, "still accepting connections after SIGTERM"
            time.sleep(0.005)
        for t in threads:
            t.join(timeout=60)
        proc.wait(timeout=30)
        assert refused_while_draining, "the calls had finished before the listener closed: nothing was drained"
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", timeout=2)
        assert all(isinstance(r, httpx.Response) for r in results), results
        assert [r.status_code for r in results] == [200] * N
        assert all(r.headers["x-flextier-served-tier"] == "flex" for r in results)
        billed = sorted(Decimal(r["cost"]) for r in emu.ledger()[before:] if r["outcome"] == "ok")
        with Ledger(db, create=False) as lg:
            rows = lg.rows()
        assert len(rows) == N and all(r.status == 200 and r.outcome == "ok" for r in rows)
        assert sorted(r.cost for r in rows) == billed == sorted(Decimal(r.headers["x-flextier-cost-usd"])
                                                                 for r in results)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        emu.set_profile("calm", latency_scale=0)
