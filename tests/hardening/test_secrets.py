"""Secrets: a planted API key (and base-URL password) appears nowhere flextier writes.

Searched: every table of the store and the raw bytes of the db, -wal and -shm files, the
debug log, the text and HTML report (and ``report --json``, ``status --json``), the
results file, and the CLI's stdout/stderr, including when the provider echoes the key
back in an error message (as real providers do on a 401).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hardening_support import MODEL, PROVIDER_MODELS, run_cli

KEY = "sk-PLANTED-hardening-0123456789abcdefSECRET"
PASSWORD = "PLANTEDpassw0rd-hardening"
NEEDLES = (KEY, PASSWORD, KEY[10:30])


def _search(tmp: Path, texts: list[str]) -> list[str]:
    hits = []
    for t in texts:
        for n in NEEDLES:
            if n in t:
                hits.append(f"output text: ...{t[max(0, t.index(n) - 80):t.index(n) + 40]}...")
    for p in tmp.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for n in NEEDLES:
                if n.encode() in data:
                    hits.append(f"{p.name}")
    return hits


def _dump_db(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = []
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in con.execute(f"SELECT * FROM {name}"):  # noqa: S608 - table names from sqlite_master
            out.append(repr(row))
    con.close()
    return "\n".join(out)


def _run_all(tmp: Path, base_url: str, model: str, extra: list[str] = ()) -> list[str]:
    job = tmp / "s.jsonl"
    job.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"hello {i}"}) + "\n" for i in range(5)))
    db, out = tmp / "s.db", tmp / "s.out.jsonl"
    texts = []
    rc, so, se = run_cli(["run", str(job), "--model", model, "--base-url", base_url, "--store", str(db),
                          "--out", str(out), "--max-tokens", "16", "--html", str(tmp / "run.html"), *extra])
    assert "Traceback" not in se, se
    texts += [so, se]
    # the wal/shm as left by a run that is not closed cleanly is covered by the kill test's
    # store; here the files as they are right after the run
    for args in (["report", str(db), "--html", str(tmp / "report.html")], ["report", str(db), "--json"],
                 ["status", str(db)], ["status", str(db), "--json"],
                 ["resume", str(db), "--base-url", base_url]):
        rc2, so2, se2 = run_cli(args)
        texts += [so2, se2]
    texts.append(_dump_db(db))
    return texts + [str(rc)]


def _with_password(url: str) -> str:
    return url.replace("http://", f"http://flextier:{PASSWORD}@", 1)


def test_planted_key_against_emulator(calm_emu, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("FLEXTIER_LOG", "DEBUG")
    caplog.set_level("DEBUG")
    texts = _run_all(tmp_path, _with_password(calm_emu.openai_base_url), MODEL)
    assert texts[-1] == "0", texts[1]
    texts.append(caplog.text)
    assert not _search(tmp_path, texts)


@pytest.mark.parametrize("provider", ["openai", "gemini", "anthropic"])
def test_key_echoed_by_provider_is_not_stored(fuzz_server, tmp_path, monkeypatch, caplog, provider):
    """The provider answers 401 with the key in the message: flextier must not write it down."""
    for env in ("OPENAI_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(env, KEY)
    monkeypatch.setenv("FLEXTIER_LOG", "DEBUG")
    caplog.set_level("DEBUG")
    fuzz_server.mode = "echo_key"
    extra = ["--tier", "standard"] if provider == "anthropic" else []
    texts = _run_all(tmp_path, fuzz_server.base_url(provider), PROVIDER_MODELS[provider], extra)
    assert KEY in "".join(json.dumps(r["headers"]) for r in fuzz_server.requests), "the key was not even sent"
    texts.append(caplog.text)
    hits = _search(tmp_path, texts)
    assert not hits, hits
