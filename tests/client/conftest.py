"""Fixtures for the client-core tests: a fake clock, policies on it, and one emulator for the session.

The fake clock makes every backoff instant: ``sleep`` only advances ``now`` and records
the delay, and may run ``on_sleep`` (e.g. to switch the emulator's profile between
attempts). Nothing here ever sleeps through a real backoff.
"""
from __future__ import annotations

import os
import random
from typing import Any, Callable

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")

from flextier.policy.backoff import Backoff  # noqa: E402
from flextier.policy.fallback import Policy  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        if self.on_sleep is not None:
            self.on_sleep(s)

    async def asleep(self, s: float) -> None:
        self.sleep(s)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_policy(clock: FakeClock) -> Callable[..., Policy]:
    def make(**kw: Any) -> Policy:
        kw.setdefault("backoff", Backoff(base=1.0, cap=8.0, rng=random.Random(0)))
        return Policy(clock=clock.now, sleep=clock.sleep, asleep=clock.asleep, **kw)
    return make


@pytest.fixture(scope="session")
def emu_server():
    from flextier.emulator import serve
    with serve(profile="calm", seed=0, latency_scale=0) as emu:
        yield emu


@pytest.fixture
def emu(emu_server):
    emu_server.set_profile("calm", latency_scale=0)
    yield emu_server
    emu_server.set_profile("calm", latency_scale=0)


# provider cases: (id, catalog name, endpoint)
FLEX_CASES = [
    ("openai-chat", "openai/gpt-5.4", "chat"),
    ("openai-responses", "openai/gpt-5.4", "responses"),
    ("gemini", "gemini/gemini-3-flash", "chat"),
    ("bedrock", "bedrock/nova-pro", "chat"),
]
ALL_CASES = FLEX_CASES + [("anthropic", "anthropic/claude-haiku-4-5", "chat")]


def base_url(emu: Any, model: str) -> str:
    return emu.base_urls()[model.split("/", 1)[0]]
