"""`flextier estimate` prices the long-context uplift per call, by that call's own input size.

Regression for issue 11 item 1: the sum of all calls' input was compared with the per-request
threshold, so 50,000 short Gemini 3.1 Pro calls were priced at the >200k rate ($1,300 / $650).
"""
import json
import subprocess
import sys
from decimal import Decimal

from flextier.catalog import default_catalog
from flextier.cost import Usage, tier_cost
from flextier.estimate import estimate


def _rows(model, calls, inp, out, frac=0.0):
    entry = default_catalog().resolve(model)
    return {(r.tier, r.cached): r.cost for r in estimate(entry, calls, inp, out, frac)}


def _cli(*args):
    p = subprocess.run([sys.executable, "-m", "flextier", "estimate", *args, "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return {(r["tier"], r["cached"]): Decimal(r["cost_usd_exact"]) for r in json.loads(p.stdout)["models"][0]["rows"]}


def test_seed_article_gemini_31_pro_is_800_standard_400_flex_and_batch():
    rows = _rows("gemini/gemini-3.1-pro", 50_000, 2_000, 1_000)
    assert rows[("standard", False)] == Decimal(800)
    assert rows[("flex", False)] == Decimal(400)
    assert rows[("batch", False)] == Decimal(400)


def test_seed_article_gemini_31_pro_cli():
    rows = _cli("--model", "gemini/gemini-3.1-pro", "--calls", "50000", "--input-tokens", "2000",
                "--output-tokens", "1000")
    assert rows[("standard", False)] == Decimal(800)
    assert rows[("flex", False)] == Decimal(400) == rows[("batch", False)]


def test_gpt_54_cached_workload_python():
    rows = _rows("openai/gpt-5.4", 1_000, 10_000, 500, 0.8)
    assert rows[("standard", False)] == Decimal("32.50")
    assert rows[("standard", True)] == Decimal("14.50")
    assert rows[("flex", True)] == Decimal("7.25")


def test_gpt_54_cached_workload_cli():
    rows = _cli("--model", "openai/gpt-5.4", "--calls", "1000", "--input-tokens", "10000",
                "--output-tokens", "500", "--cached-fraction", "0.8")
    assert rows[("standard", False)] == Decimal("32.50")
    assert rows[("standard", True)] == Decimal("14.50")
    assert rows[("flex", True)] == Decimal("7.25")


def test_uplift_still_applies_to_a_call_whose_own_prompt_is_long():
    # gemini-3.1-pro above 200k: $4 in / $18 out (providers.md 8.2). One 300k-token call, 1k out:
    # 300,000 x 4 / 1M + 1,000 x 18 / 1M = 1.2 + 0.018.
    rows = _rows("gemini/gemini-3.1-pro", 10, 300_000, 1_000)
    assert rows[("standard", False)] == Decimal(10) * (Decimal("1.2") + Decimal("0.018"))
    assert rows[("flex", False)] == rows[("standard", False)] / 2


def test_tier_cost_of_a_summed_workload_decides_uplift_by_request_size():
    entry = default_catalog().resolve("openai/gpt-5.4")
    total = Usage(1_000 * 250_000, 0, 1_000 * 100)  # each call 250k: below the 272k threshold
    std = entry.tier_prices("standard")
    assert tier_cost(total, std, entry, request_input_tokens=250_000) == Decimal(625) + Decimal("1.5")
    assert tier_cost(total, std, entry) > Decimal(1000)  # priced as one giant request: uplifted


# providers.md section 8.6: the same workload (50,000 calls x 2,000 in + 1,000 out) on every model,
# standard -> flex/batch, hand-computed from the price tables there. Gemini 2.5 Pro and 3.1 Pro were
# wrong (uplifted) before the per-request fix.
SECTION_8_6 = {
    "openai/gpt-5.5": ("2000", "1000"), "openai/gpt-5.4": ("1000", "500"), "openai/gpt-5.4-mini": ("300", "150"),
    "openai/o3": ("600", "300"), "openai/o4-mini": ("330", "165"), "gemini/gemini-2.5-pro": ("625", "312.50"),
    "gemini/gemini-2.5-flash": ("155", "77.50"), "gemini/gemini-3-flash": ("200", "100"),
    "gemini/gemini-3.1-pro": ("800", "400"), "bedrock/nova-pro": ("240", "120"), "bedrock/nova-lite": ("18", "9"),
    "bedrock/nova-micro": ("10.50", "5.25"), "bedrock/qwen3-235b": ("66", "33"),
    "anthropic/claude-sonnet-4-6": ("1050", "525"), "anthropic/claude-haiku-4-5": ("350", "175"),
    "anthropic/claude-opus-4-7": ("1750", "875"),
}


def test_catalog_matches_the_reference_workload_table():
    for model, (std, discounted) in SECTION_8_6.items():
        rows = _rows(model, 50_000, 2_000, 1_000)
        assert rows[("standard", False)] == Decimal(std), model
        assert rows[("batch", False)] == Decimal(discounted), model
        if rows[("flex", False)] is not None:
            assert rows[("flex", False)] == Decimal(discounted), model
