"""Fixtures of the batch-lane tests: an emulator on loopback, moto's S3 server, official SDK
clients pointed at them, and job stores.

Time: the emulator runs at ``TIME_SCALE`` emulated seconds per wall second, so a batch that
takes an emulated hour finishes in about a second of wall time.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3

from flextier.providers.bedrock import make_client
import httpx
import pytest

from flextier._types import CallRequest
from flextier.batch import BatchBackend, BatchItem, get_backend
from flextier.batch.base import BatchHandle, BatchStatus
from flextier.catalog import ModelEntry, default_catalog
from flextier.emulator import Emulator, serve
from flextier.jobs.input import JobItem
from flextier.jobs.store import JobStore

TIME_SCALE = 3600.0
BUCKET = "flextier-batch-test"
MODELS = {"openai": "openai/gpt-5.4-mini", "anthropic": "anthropic/claude-haiku-4-5",
          "gemini": "gemini/gemini-3-flash-preview", "bedrock": "bedrock/us.anthropic.claude-haiku-4-5"}
PROVIDERS = tuple(MODELS)
_CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def entry(name: str) -> ModelEntry:
    return default_catalog().resolve(MODELS.get(name, name))


def make_items(e: ModelEntry, n: int, prefix: str = "i", max_tokens: int = 40) -> list[BatchItem]:
    return [BatchItem(f"{prefix}{i}", CallRequest(model=e, messages=[{"role": "user", "content": f"question {i}"}],
                                                 params={"max_tokens": max_tokens})) for i in range(n)]


def set_batch_knobs(emu: Emulator, **knobs: Any) -> None:
    """Change the emulator's batch knobs through its control route."""
    httpx.post(f"{emu.url}/_emulator/batch", json=knobs, timeout=10).raise_for_status()


def wait_terminal(backend: BatchBackend, handle: BatchHandle, timeout: float = 20.0) -> BatchStatus:
    end = time.monotonic() + timeout
    while True:
        st = backend.poll(handle)
        if st.terminal:
            return st
        if time.monotonic() > end:
            raise AssertionError(f"batch {handle.remote_id} still {st.state} after {timeout}s")
        time.sleep(0.02)


def batch_rows(emu: Emulator, provider: str | None = None) -> list[dict[str, Any]]:
    return [r for r in emu.ledger() if r["requested_tier"] == "batch" and (provider is None or r["provider"] == provider)]


def ledger_cost(rows: list[dict[str, Any]]) -> float:
    return sum(float(r["cost"]) for r in rows if r["cost"] is not None)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with the test bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, **_CREDS).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture
def emulator(s3_endpoint: str) -> Iterator[Callable[..., Emulator]]:
    """Factory: ``emulator(profile="calm", start=..., **batch_knobs)``; stopped at teardown."""
    started: list[Any] = []

    def make(profile: str = "calm", start: str = "2026-11-24T02:00", **batch_knobs: Any) -> Emulator:
        cm = serve(profile=profile, seed=7, time_scale=TIME_SCALE, start=start)
        emu = cm.__enter__()
        started.append(cm)
        set_batch_knobs(emu, s3_endpoint_url=s3_endpoint, **batch_knobs)
        return emu

    yield make
    for cm in reversed(started):
        cm.__exit__(None, None, None)


@pytest.fixture
def emu(emulator: Callable[..., Emulator]) -> Emulator:
    return emulator()


@pytest.fixture
def backend_for(s3_endpoint: str) -> Callable[..., BatchBackend]:
    """``backend_for(emu, "openai" | model name, **kw)``: a batch backend whose SDK client talks to ``emu``."""

    def make(emu: Emulator, provider: str, **kw: Any) -> BatchBackend:
        e = entry(provider)
        if e.provider == "bedrock":
            # built as flextier builds it (botocore's retries off: a retried CreateModelInvocationJob
            # would sleep through botocore's real backoff, and the lane decides retries itself)
            kw.setdefault("client", make_client(emu.bedrock_endpoint_url, service="bedrock", session=boto3, region="us-east-1",
                                                aws_access_key_id="testing", aws_secret_access_key="testing"))
            kw.setdefault("s3_client", boto3.client("s3", endpoint_url=s3_endpoint, **_CREDS))
            kw.setdefault("bucket", BUCKET)
            kw.setdefault("min_items", 1)
        else:
            kw.setdefault("base_url", {"openai": emu.openai_base_url, "anthropic": emu.anthropic_base_url,
                                       "gemini": emu.gemini_base_url}[e.provider])
            kw.setdefault("api_key", "test-key")
        return get_backend(e, **kw)

    return make


@pytest.fixture
def job_store(tmp_path: Path) -> Callable[..., JobStore]:
    """``job_store(entry, n, prefix="i")``: a job store holding ``n`` simple prompt items."""

    def make(e: ModelEntry, n: int, prefix: str = "i", name: str = "job") -> JobStore:
        store = JobStore(tmp_path / f"{name}.db")
        store.create_job(name=name, model=e.name, tier_mode="batch", created_at=0.0, config={})
        items = (JobItem(f"{prefix}{i}", i + 1, json.dumps({"id": f"{prefix}{i}", "prompt": f"question {i}",
                                                             "params": {"max_tokens": 40}}))
                 for i in range(n))
        store.import_items(items, file="items.jsonl", skip_invalid=False)
        return store

    return make


# -- kill -9 of a worker process ----------------------------------------------------------------

def remote_batch_id(path: Path) -> str | None:
    """The provider id of the job's first submitted batch, read from a running job's store."""
    if not Path(path).exists():
        return None
    try:
        with sqlite3.connect(str(path)) as db:
            row = db.execute("SELECT remote_id FROM batches WHERE remote_id IS NOT NULL").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, within: float, what: str | Callable[[], str],
                 settle: float = 0.0, poll: float = 0.05, alive_after_settle: bool = True) -> None:
    """Wait until ``ready()`` (the worker must stay alive meanwhile), let it run ``settle`` more
    seconds, then SIGKILL it and check that the kill is what ended it."""
    end = time.monotonic() + within
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else proc.returncode
            assert time.monotonic() < end, what() if callable(what) else what
            time.sleep(poll)
        time.sleep(settle)
        if alive_after_settle:
            assert proc.poll() is None, "the batch finished before the kill: slow it down"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
