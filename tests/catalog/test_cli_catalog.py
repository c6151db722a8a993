"""estimate / models / advise through the real console script."""
import json
import subprocess
import sys

import pytest

from flextier.cli import main


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flextier", *args], capture_output=True, text=True, env=env)


def test_estimate_seed_example_json():
    p = run("estimate", "--model", "gemini/gemini-3-flash", "--calls", "50000", "--input-tokens", "2000",
            "--output-tokens", "1000", "--json")
    assert p.returncode == 0, p.stderr
    rows = {(r["tier"], r["cached"]): r for r in json.loads(p.stdout)["models"][0]["rows"]}
    assert rows[("standard", False)]["cost_usd_exact"] in ("200", "200.00", "200.000000")
    assert float(rows[("standard", False)]["cost_usd"]) == 200.0
    assert float(rows[("flex", False)]["cost_usd"]) == 100.0 and rows[("flex", False)]["saved_pct"] == 50.0
    assert float(rows[("batch", False)]["cost_usd"]) == 100.0


def test_estimate_table_compares_models_and_claude_points_to_batch(capsys):
    rc = main(["estimate", "-m", "gemini/gemini-3-flash", "-m", "anthropic/claude-haiku-4-5", "--calls", "50000",
               "--input-tokens", "2000", "--output-tokens", "1000", "--cached-fraction", "0.8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "$200.00" in out and "$100.00" in out and "$84.00" in out
    assert "use batch" in out.replace("\n", " ").replace("│", " ") or "batch" in out


def test_estimate_cached_rows_json(capsys):
    main(["estimate", "-m", "openai/gpt-5.4-mini", "--calls", "1000", "--input-tokens", "10000",
          "--output-tokens", "500", "--cached-fraction", "0.8", "--json"])
    rows = json.loads(capsys.readouterr().out)["models"][0]["rows"]
    flex_cached = next(r for r in rows if r["tier"] == "flex" and r["cached"])
    assert flex_cached["cost_usd_exact"] == "2.175"  # 1000 x hand-computed $0.002175


@pytest.mark.parametrize("args,needle", [
    (["--calls", "-5"], "--calls"),
    (["--cached-fraction", "1.5"], "--cached-fraction"),
    (["--cached-fraction", "-0.1"], "--cached-fraction"),
    (["--calls", "abc"], "--calls"),
])
def test_estimate_bad_flags_one_line_exit_2(args, needle):
    base = {"--model": "gemini/gemini-3-flash", "--calls": "10", "--input-tokens": "1", "--output-tokens": "1"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    p = run("estimate", *flat)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert needle in p.stderr


def test_unknown_model_exit_2_with_suggestions():
    p = run("estimate", "-m", "gemini/gemini-3-flsh", "--calls", "1", "--input-tokens", "1", "--output-tokens", "1")
    assert p.returncode == 2 and "gemini/gemini-3-flash" in p.stderr and "Traceback" not in p.stderr


def test_malformed_price_file_exit_2_names_line(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text('{"models": [\n  {"name": "openai/o3",\n   "prices": {"flex": {"input": "x"}}}\n]}')
    for args in (["--prices", str(f), "models"], ["models", "--prices", str(f)]):
        p = run(*args)
        assert p.returncode == 2 and f"{f}:3:" in p.stderr and "prices.flex.input" in p.stderr  # the value's line
        assert len(p.stderr.strip().splitlines()) == 1


def test_models_filter_and_json(capsys):
    assert main(["models", "--provider", "bedrock", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in data["models"]}
    assert "bedrock/us.amazon.nova-pro-v1:0" in names and all(n.startswith("bedrock/") for n in names)
    lite = next(m for m in data["models"] if "nova-lite" in m["name"])
    assert lite["flex"] is False and lite["batch"] is True
    ds = next(m for m in data["models"] if "deepseek" in m["name"])
    assert ds["prices"]["flex"]["input"] is None  # unknown stays null


def test_models_table_shows_unknown(capsys):
    assert main(["models", "-p", "bedrock"]) == 0
    assert "unknown" in capsys.readouterr().out


@pytest.mark.parametrize("args,tier", [
    (["-m", "openai/o3", "--human-waiting"], "standard"),
    (["-m", "openai/o3", "--deadline", "2d"], "batch"),
    (["-m", "openai/o3", "--deadline", "3h"], "flex"),
    (["-m", "openai/o3", "--deadline", "2d", "--chained"], "flex"),
    (["-m", "anthropic/claude-sonnet-4-6", "--deadline", "2d"], "batch"),
    (["-m", "anthropic/claude-sonnet-4-6", "--deadline", "2h"], "standard"),
])
def test_advise_rules(capsys, args, tier):
    assert main(["advise", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tier"] == tier and out["reason"]


def test_advise_bad_deadline(capsys):
    assert main(["advise", "-m", "openai/o3", "--deadline", "soon"]) == 2
    assert "--deadline" in capsys.readouterr().err
