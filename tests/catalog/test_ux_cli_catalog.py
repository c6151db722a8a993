"""Small things a user trips on: model ids cut in `models`, no --version, `flextier.emulator` missing."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def run(*args, columns=None):
    env = {**os.environ}
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "flextier", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("columns", [80, 150])
def test_models_never_truncates_an_id(columns):
    ids = [m["name"] for m in json.loads(run("models", "--json").stdout)["models"]]
    p = run("models", columns=columns)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= columns
    cells = {c.strip() for ln in lines for c in ln.split("│")}
    for mid in ids:
        assert mid in cells, (columns, mid)   # whole, in one cell, on one line
    assert "…" not in p.stdout.replace("narrow terminal", "")
    if columns == 150:
        assert "flex price" in p.stdout     # prices still shown when they fit


def test_version():
    from flextier import __version__

    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"flextier {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


def test_emulator_reachable_from_import_flextier_and_import_stays_light():
    code = ("import sys, flextier; light = 'flextier.emulator' not in sys.modules and 'openai' not in sys.modules; "
            "s = flextier.emulator.serve; print(light, callable(s))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["True", "True"], p.stderr


def test_readme_python_emulator_snippet_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    block = text.split("**Against the emulator, from Python**", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    p = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    n, tier, _cost, billed = p.stdout.split()
    assert int(n) == 20 and tier in ("flex", "standard") and int(billed) >= 21


def test_readme_names_each_providers_key_variables():
    from flextier.jobs.session import API_KEY_ENV

    text = README.read_text(encoding="utf-8")
    for names in API_KEY_ENV.values():
        for n in names:
            assert f"`{n}`" in text, n
    assert "AWS_ACCESS_KEY_ID" in text


@pytest.mark.parametrize("columns", [80, 150])
def test_estimate_never_cuts_model_ids(columns):
    ids = ["bedrock/qwen.qwen3-235b-a22b-2507-v1:0", "bedrock/us.anthropic.claude-sonnet-4-6",
           "gemini/gemini-3.1-pro-preview"]
    args = ["estimate", "--calls", "1000", "--input-tokens", "2000", "--output-tokens", "1000"]
    for m in ids:
        args += ["--model", m]
    p = run(*args, columns=columns)
    assert p.returncode == 0, p.stderr
    lines = {ln.strip() for ln in p.stdout.splitlines()}
    for mid in ids:
        assert mid in lines, (columns, mid)   # whole, on a line of its own (each model's table title)
    assert "…" not in p.stdout
