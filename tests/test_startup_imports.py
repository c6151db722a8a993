"""Start-up stays light: what ``flextier`` imports before it needs it (issue 19, 0.5 s to the first send).

Import-based, not wall-clock (a busy CI machine must not make it flaky): each case runs in a
fresh interpreter and lists which heavy modules ended up in ``sys.modules``. The figures these
guard are in the README (``bench/startup.py``): the openai SDK alone took 0.35-0.5 s.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Modules that a command must not load unless it uses them.
HEAVY = ("openai", "anthropic", "google.genai", "boto3", "botocore", "pyarrow", "rich.progress", "rich.live",
         "flextier.emulator.app", "flextier.emulator.engine", "bpe_openai", "starlette", "uvicorn", "pandas", "numpy",
         "langchain_core", "pydantic_ai")


def _loaded(code: str, cwd: Path) -> dict:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules), "rc": rc}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["resume", "--help"], ["status", "--help"],
                                  ["--version"]])
def test_help_paths_import_nothing_heavy(tmp_path, argv):
    res = _loaded(f"""
        import contextlib, io
        from flextier.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main({argv!r})
    """, tmp_path)
    assert res == {"heavy": [], "rc": 0}


@pytest.mark.parametrize("tier", [["--tier", "flex"], ["--tier", "auto", "--deadline", "24h"]])
def test_an_openai_job_against_an_endpoint_never_imports_the_sdks(tmp_path, tier):
    """``flextier run --base-url`` on OpenAI sends through :mod:`flextier.providers.openai.lean`:
    no provider SDK, no emulator code, no progress panel in the client process (``auto`` with a
    deadline builds the batch backend too: it loads the SDK only when a batch is really sent)."""
    from flextier.emulator import serve

    (tmp_path / "j.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"hi {i}", "max_tokens": 8}) + "\n"
                                              for i in range(5)))
    with serve(profile="calm", time_scale=1000, seed=1) as emu:
        res = _loaded(f"""
            import os
            os.environ["OPENAI_API_KEY"] = "test"
            from flextier.cli import main
            rc = main(["run", "j.jsonl", "--model", "openai/gpt-5.4-mini", "--base-url", {emu.url + "/v1"!r},
                       *{tier!r}, "--quiet"])
        """, tmp_path)
        assert len(emu.engine.ledger.rows()) == 5
    assert res == {"heavy": [], "rc": 0}
