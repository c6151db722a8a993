"""Fixtures for the hardening suite (helpers live in ``hardening_support``)."""
from __future__ import annotations

import logging
import socket
import threading
from typing import Iterator

import pytest

from hardening_support import START, FuzzServer, run_cli, wait_http


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
    import uvicorn

    srv = FuzzServer()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    srv.port = sock.getsockname()[1]
    config = uvicorn.Config(srv.app(), log_level="critical", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").disabled = True  # the cut-stream mode raises on purpose
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    wait_http(srv.root + "/_emulator/clock")
    try:
        yield srv
    finally:
        server.should_exit = True
        th.join(10)
        sock.close()
        logging.getLogger("uvicorn.error").disabled = False


@pytest.fixture
def cli():
    return run_cli


