"""Shared fixtures: emulators on free ports and official SDK clients pointed at them."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from flextier.emulator import Emulator, serve

# Fast emulated service: a large time scale makes the default latencies ~milliseconds of wall time.
FAST = {"time_scale": 2000.0}


@pytest.fixture
def emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: ``emulator(profile=..., **knobs)`` starts one; all are stopped at teardown."""
    started: list[Any] = []

    def make(profile: str = "calm", **kw: Any) -> Emulator:
        opts = {**FAST, **kw}
        cm = serve(profile=profile, **opts)
        emu = cm.__enter__()
        started.append(cm)
        return emu

    yield make
    for cm in reversed(started):
        cm.__exit__(None, None, None)


@pytest.fixture
def calm(emulator: Callable[..., Emulator]) -> Emulator:
    return emulator("calm")


@pytest.fixture
def outage(emulator: Callable[..., Emulator]) -> Emulator:
    return emulator("outage")
