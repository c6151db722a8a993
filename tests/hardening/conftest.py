"""Fixtures for the hardening suite (helpers live in ``hardening_support``)."""
from __future__ import annotations

from typing import Iterator

import pytest

from hardening_support import START, FuzzServer, run_cli, serve_in_thread


@pytest.fixture(autouse=True)
def _no_leaking_env(monkeypatch):
    """Each test sets the keys it needs; none leak in from the environment."""
    for k in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "FLEXTIER_LOG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "hardening")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hardening")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield


@pytest.fixture(scope="module")
def calm_emu():
    from flextier.emulator import serve

    with serve(profile="calm", time_scale=2000, start=START, seed=1) as emu:
        yield emu



@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[FuzzServer]:
    with serve_in_thread(FuzzServer()) as srv:  # the cut-stream mode raises on purpose
        yield srv


@pytest.fixture
def cli():
    return run_cli


