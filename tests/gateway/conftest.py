"""Fixtures for the gateway tests: one emulator for the module, a gateway in front of it per test.

The gateway's policy runs on a fake clock (backoff only advances a counter), so an outage that
takes minutes of flex backoff before standard runs in milliseconds. Everything is loopback.
"""
from __future__ import annotations

import os
import random
from dataclasses import replace
from typing import Any, Callable, Iterator

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")

from flextier.gateway import GatewayConfig, serve  # noqa: E402
from flextier.policy.backoff import Backoff  # noqa: E402
from flextier.policy.fallback import Policy  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.slept += s

    async def asleep(self, s: float) -> None:
        self.sleep(s)


@pytest.fixture(scope="session")
def emu_server():
    from flextier.emulator import serve as emu_serve
    with emu_serve(profile="calm", seed=0, latency_scale=0) as emu:
        yield emu


@pytest.fixture
def emu(emu_server):
    emu_server.set_profile("calm", latency_scale=0)
    yield emu_server
    emu_server.set_profile("calm", latency_scale=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway(emu, clock, tmp_path) -> Iterator[Callable[..., Any]]:
    """gateway(cfg=None, **kw) -> a running GatewayServer in front of the emulator."""
    started = []

    def make(cfg: GatewayConfig | None = None, **kw: Any):
        cfg = cfg or GatewayConfig()
        cfg = replace(cfg, upstreams={**cfg.upstreams, **emu.base_urls()})
        pol = Policy(clock=clock.now, sleep=clock.sleep, asleep=clock.asleep,
                     backoff=Backoff(base=1.0, cap=8.0, rng=random.Random(0)))
        kw.setdefault("ledger", str(tmp_path / f"gw{len(started)}.db"))
        srv = serve(cfg, policy=kw.pop("policy", pol), drain_s=2.0, **kw)
        gw = srv.__enter__()
        started.append(srv)
        return gw

    yield make
    for s in started:
        s.__exit__(None, None, None)
