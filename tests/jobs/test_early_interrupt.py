"""Ctrl-C during start-up, before the first send: exit 130, one line, no traceback (issue 19).

The child is the real ``python -m flextier run`` with ``-X importtime``, whose per-module lines
on stderr tell the test how far start-up has got: SIGINT goes out the moment a chosen module
has finished importing (a condition, not a sleep). The endpoint is a loopback socket that
counts connections, so the test also knows nothing was sent before the signal.
See ``flextier/_interrupt.py`` and docs/jobs (Ctrl-C).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest


class _Listener:
    """A loopback socket that accepts and counts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _run(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(c)

    def close(self) -> None:
        self.sock.close()
        for c in self._open:
            c.close()


# modules that finish importing early (the CLI package), while Typer parses the options (its
# pydantic adapters: Typer itself turns a KeyboardInterrupt there into a silent 130), mid-way
# (the job runner) and last before the job is read and its store opened (the OpenAI lean client)
TRIGGERS = [" typer\n", " typer._adapters\n", "flextier.jobs.runner\n", "flextier.providers.openai.lean\n"]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=["cli-import", "option-parsing", "runner-import", "client-import"])
def test_ctrl_c_before_the_first_send_is_one_line_and_130(tmp_path: Path, trigger: str) -> None:
    if trigger == " typer._adapters\n" and importlib.util.find_spec("typer._adapters") is None:
        pytest.skip("this Typer (< 0.29) parses options without pydantic adapters")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"id": "r{i}", "prompt": "hi {i}"}}\n' for i in range(20)))
    srv = _Listener()
    watchdog: threading.Timer | None = None
    try:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-early"}
        p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "flextier", "run", str(jobs), "--model",
                              "openai/gpt-5.4-mini", "--base-url", srv.url, "--store", str(tmp_path / "st.db"),
                              "--out", str(tmp_path / "out.jsonl"), "--drain-timeout", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert p.stderr is not None
        # a trigger that never comes must fail the test, not hang it (the child waits on the listener)
        watchdog = threading.Timer(60, p.kill)
        watchdog.start()
        seen: list[str] = []
        for line in p.stderr:
            seen.append(line)
            if line.startswith("import time:") and line.endswith(trigger):
                sent_before = srv.accepted
                p.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"the child never imported {trigger.strip()!r}: {''.join(seen)[-2000:]}")
        rest = p.stderr.read()
        rc = p.wait(timeout=60)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        srv.close()
    assert sent_before == 0, "the trigger came after a send; pick an earlier module"
    said = [x for x in rest.splitlines() if not x.startswith("import time:")]
    assert rc == 130, (rc, said)
    assert said == ["flextier: interrupted"], rest[-3000:]
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


def test_a_library_import_keeps_the_programs_own_sigint() -> None:
    """``import flextier`` in someone else's program must not take over Ctrl-C."""
    code = ("import signal, flextier, flextier.cli; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
