"""Cost math against hand-computed cases, one or more per provider."""
from decimal import Decimal as D

import pytest

from flextier.catalog import load_builtin
from flextier.cost import Usage, fmt_usd, price_usage

CAT = load_builtin()


def cost(model, tier, **usage):
    return price_usage(Usage(**usage), CAT.resolve(model), tier)


def test_seed_article_gemini_3_flash_standard_and_flex():
    # 50,000 calls x (2,000 in + 1,000 out): $200 standard, $100 flex (the article's "$100").
    c = cost("gemini/gemini-3-flash", "flex", input_tokens=50_000 * 2000, output_tokens=50_000 * 1000)
    assert c.cost == D("100") and c.standard_cost == D("200") and c.saving == D("100")
    assert c.saving_pct == D("50")


def test_openai_cached_input_and_flex_stacks_with_cache():
    # gpt-5.4-mini: 10,000 in of which 8,000 cached, 500 out.
    # standard: 2,000*0.75 + 8,000*0.075 + 500*4.50 = 1500 + 600 + 2250 = 4350 / 1e6
    # flex:     2,000*0.375 + 8,000*0.0375 + 500*2.25 = 750 + 300 + 1125 = 2175 / 1e6
    c = cost("openai/gpt-5.4-mini", "flex", input_tokens=10_000, cached_input_tokens=8_000, output_tokens=500)
    assert c.standard_cost == D("0.00435")
    assert c.cost == D("0.002175")


def test_reasoning_tokens_billed_as_output():
    # o3: 1,000 in, 3,000 out of which 2,500 reasoning. flex = 1000*1.00 + 3000*4.00 = 13,000 / 1e6
    c = cost("openai/o3", "flex", input_tokens=1000, output_tokens=3000, reasoning_tokens=2500)
    assert c.cost == D("0.013")
    same_without_reasoning_split = cost("openai/o3", "flex", input_tokens=1000, output_tokens=3000)
    assert c.cost == same_without_reasoning_split.cost


def test_gemini_flex_does_not_discount_cached_tokens_per_catalog():
    # gemini-3-flash flex: cached tokens at the standard cached rate (catalog: stacks=false)
    # 1,000,000 in, 600,000 cached: 400,000*0.25 + 600,000*0.05 = 100,000 + 30,000 = $0.13
    c = cost("gemini/gemini-3-flash-preview", "flex", input_tokens=1_000_000, cached_input_tokens=600_000)
    assert c.cost == D("0.13")
    entry = CAT.resolve("gemini/gemini-3-flash")
    assert entry.cache_discount_stacks["flex"] is False


def test_gemini_thinking_folded_into_output_and_long_context_uplift():
    # gemini-3.1-pro above 200k prompt: input x2, output x1.5 -> standard 4.00 / 18.00
    c = cost("gemini/gemini-3.1-pro", "standard", input_tokens=250_000, output_tokens=10_000, reasoning_tokens=4000)
    assert c.cost == D("250000") * D("4.00") / 10**6 + D("10000") * D("18.00") / 10**6


def test_bedrock_nova_pro_flex_cached_stacks():
    # 100k in, 50k cached, 10k out: flex 50k*0.40 + 50k*0.10 + 10k*1.60 = 20,000+5,000+16,000 -> $0.041
    c = cost("bedrock/nova-pro", "flex", input_tokens=100_000, cached_input_tokens=50_000, output_tokens=10_000)
    assert c.cost == D("0.041")
    assert c.standard_cost == D("0.082")  # 50k*0.8 + 50k*0.2 + 10k*3.2 = 40+10+32 thousand


def test_anthropic_batch_and_no_flex():
    c = cost("anthropic/claude-sonnet-4-6", "batch", input_tokens=2000, output_tokens=1000)
    assert c.cost == D("0.0105") and c.standard_cost == D("0.021")
    no_flex = cost("anthropic/claude-sonnet-4-6", "flex", input_tokens=2000, output_tokens=1000)
    assert no_flex.cost is None  # not offered: unknown, never 0


def test_unknown_price_is_none_and_shown_as_unknown_never_zero():
    c = cost("bedrock/deepseek.v3-v1:0", "flex", input_tokens=1000, output_tokens=1000)
    assert c.cost is None and c.saving is None
    assert fmt_usd(c.cost) == "unknown"
    # standard is known for DeepSeek, so the counterfactual still prices
    assert c.standard_cost == D("0.00226")
    # an unknown cached rate only matters when cached tokens exist
    q = cost("bedrock/qwen3-32b", "flex", input_tokens=1000, output_tokens=0)
    assert q.cost == D("0.000075")
    assert cost("bedrock/qwen3-32b", "flex", input_tokens=1000, cached_input_tokens=10).cost is None


def test_zero_usage_costs_zero_not_unknown():
    assert cost("openai/gpt-5.4", "flex").cost == D("0")


@pytest.mark.parametrize("bad", [dict(input_tokens=-1), dict(input_tokens=1, cached_input_tokens=2),
                                 dict(output_tokens=1, reasoning_tokens=2), dict(input_tokens=1.5)])
def test_usage_rejects_impossible_counts(bad):
    with pytest.raises(ValueError):
        Usage(**bad)
