"""gateway.toml checking and the CLI: bad input is one line naming file/line/field, exit 2;
``flextier report --gateway`` reads the ledger."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from flextier.cli import main
from flextier.errors import UserInputError
from flextier.gateway import load_config
from flextier.gateway.ledger import CallRow, Ledger


@pytest.mark.parametrize("text,where", [
    ('[keys.a]\nkey_env = "GWK"\ndaily_usd = "lots"\n', ":3: keys.a.daily_usd:"),
    ('[keys.a]\nkey_env = "GWK"\nupstream = { openai = "sk-live-123" }\n', ":3: keys.a.upstream.openai:"),
    ('[keys.a]\nkey_env = "NOT_SET_ANYWHERE"\n', ":2: keys.a.key_env:"),
    ('[keys.a]\nkey_env = "GWK"\ntier = "cheap"\n', ":3: keys.a.tier:"),
    ('[gateway]\nmax_body_bytes = 10\n', ":2: gateway.max_body_bytes:"),
    ('[upstreams]\nopenai = "ftp://x"\n', ":2: upstreams.openai:"),
    ('[gateway]\nbogus = 1\n', ":2: gateway.bogus:"),
    ('[keys.a\n', ":1: not valid TOML"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, monkeypatch, capsys, text, where):
    monkeypatch.setenv("GWK", "secret-gw-key")
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    with pytest.raises(UserInputError) as ei:
        load_config(p)
    assert where in ei.value.one_line(), ei.value.one_line()
    assert main(["serve", "--config", str(p), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and "Traceback" not in err[0]
    assert "secret-gw-key" not in err[0]


def test_good_config(tmp_path, monkeypatch):
    monkeypatch.setenv("GWK", "secret-gw-key")
    p = tmp_path / "gateway.toml"
    p.write_text('[gateway]\ndeadline = "30m"\n[keys.team]\nkey_env = "GWK"\nupstream = { openai = "OPENAI_TEAM" }\n'
                 'models = ["openai/gpt-5.4"]\ndaily_usd = 10\nmonthly_usd = "200.50"\nmax_wait = "5m"\n')
    cfg = load_config(p)
    k = cfg.find_key("secret-gw-key")
    assert k is not None and k.name == "team" and cfg.find_key("other") is None
    assert (k.daily_usd, k.monthly_usd, k.deadline, k.max_wait) == (Decimal(10), Decimal("200.50"), 1800.0, 300.0)
    assert "secret-gw-key" not in repr(cfg)


def test_serve_refuses_a_public_host_without_keys(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and "keys" in err


def test_report_gateway_text_json_html(tmp_path, capsys):
    db = tmp_path / "gw.db"
    now = time.time()
    with Ledger(db) as lg:
        for i, tier in enumerate(["flex", "flex", "standard"]):
            c = Decimal("0.001") if tier == "flex" else Decimal("0.002")
            lg.add(CallRow(now - 60 * i, "team", "openai", "openai/gpt-5.4", "chat", False, "auto", tier, 1 + i,
                           i, tier == "standard", 10, 0, 5, c, Decimal("0.002"), 0.5, 0.0, 200, "ok"))
        lg.add(CallRow(now, "team", "openai", "openai/gpt-5.4", "chat", False, "auto", None, 0, 0, False, None,
                       None, None, None, None, 0.0, 0.0, 429, "budget"))
    assert main(["report", "--gateway", "--store", str(db), "--since", "1h", "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "gateway calls: 4 (3 ok, 0 failed, 1 refused)" in out
    assert "cost $0.004000 vs $0.006000 at standard: saved $0.002000" in out
    html = (tmp_path / "r.html").read_text()
    assert "Chart.js v4" in html and '"cost": "0.004"' in html and "http" not in html.split("<script>")[0][:200]
    assert main(["report", "--gateway", "--store", str(tmp_path / "none.db")]) == 2
