"""The catalog: coverage, aliases, suggestions, and user price files."""
import json

import pytest

from flextier.catalog import load_builtin, load_catalog
from flextier.errors import UnknownModel, UserInputError

CAT = load_builtin()

SEED_MODELS = [
    "gemini/gemini-3-flash", "gemini/gemini-3.1-pro", "gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro",
    "openai/gpt-5.5", "openai/gpt-5.4", "openai/gpt-5.4-mini", "openai/o3", "openai/o4-mini",
    "bedrock/nova-pro", "bedrock/nova-lite", "bedrock/nova-micro", "bedrock/deepseek-v3.1", "bedrock/qwen3-235b",
    "bedrock/claude-sonnet-4-6", "anthropic/claude-sonnet-4-6",
]


@pytest.mark.parametrize("name", SEED_MODELS)
def test_every_seed_article_model_is_dated_and_sourced(name):
    e = CAT.resolve(name)
    assert e.source.startswith("http") and len(e.source_date) == 10
    assert e.tier_prices("standard") is not None


def test_claude_has_no_flex_anywhere_but_batch():
    for e in CAT:
        if "claude" in e.name:
            assert not e.supports_flex and e.supports_batch and e.tier_prices("flex") is None


def test_aliases_and_wire_ids():
    assert CAT.resolve("gemini/gemini-3-flash").name == "gemini/gemini-3-flash-preview"
    assert CAT.resolve("bedrock/nova-pro").model_id == "us.amazon.nova-pro-v1:0"
    assert CAT.resolve("GPT-5.4-MINI").name == "openai/gpt-5.4-mini"  # bare id, unique
    assert CAT.find_wire("openai", "gpt-5.4-2026-03-05").name == "openai/gpt-5.4"
    assert CAT.find_wire("bedrock", "amazon.nova-pro-v1:0").name == "bedrock/us.amazon.nova-pro-v1:0"
    assert CAT.find_wire("gemini", "models/gemini-2.5-flash").name == "gemini/gemini-2.5-flash"


def test_unknown_model_lists_closest_names():
    with pytest.raises(UnknownModel) as ei:
        CAT.resolve("openai/gpt-5.4-mni")
    assert "openai/gpt-5.4-mini" in str(ei.value)


def test_user_price_file_overrides_and_adds(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"models": [
        {"name": "openai/gpt-5.4-mini", "prices": {"flex": {"input": "0.30", "cached_input": "0.03", "output": "2.00"}}},
        {"name": "openai/my-finetune", "flex": True, "batch": False, "source": "contract 2026-10",
         "prices": {"standard": {"input": 1, "cached_input": 0.1, "output": 4}, "flex": {"input": 0.5, "output": 2}}},
    ]}))
    cat = load_catalog(f, use_env=False)
    mini = cat.resolve("openai/gpt-5.4-mini")
    assert str(mini.tier_prices("flex").input) == "0.30"
    assert str(mini.tier_prices("standard").input) == "0.75"  # untouched tier kept
    ft = cat.resolve("openai/my-finetune")
    assert ft.supports_flex and not ft.supports_batch
    assert ft.tier_prices("flex").cached_input == ft.tier_prices("standard").cached_input / 2  # openai stacks


def test_price_file_from_env(tmp_path, monkeypatch):
    f = tmp_path / "p.json"
    f.write_text('{"models": [{"name": "gemini/gemini-2.5-flash", "prices": {"flex": {"input": "0.10"}}}]}')
    monkeypatch.setenv("FLEXTIER_PRICES", str(f))
    assert str(load_catalog().resolve("gemini/gemini-2.5-flash").tier_prices("flex").input) == "0.10"


def test_toml_price_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[[models]]\nname = "openai/o3"\n[models.prices.flex]\ninput = "0.90"\n')
    assert str(load_catalog(f, use_env=False).resolve("openai/o3").tier_prices("flex").input) == "0.90"


@pytest.mark.parametrize("text,line,field", [
    ('{"models": [\n  {"name": "openai/o3",\n   "prices": {"flex": {"input": -1}}}\n]}', 3, "openai/o3.prices.flex.input"),
    ('{"models": [\n  {"name": "openai/o3", "prices": {"turbo": {}}}\n]}', 2, "openai/o3.prices.turbo"),
    ('{"models": [\n  {"name": "nope/x"}\n]}', 2, "models[0].name"),
    ('{"models": [\n  {"name": "openai/o3",\n   "prices": {"flex": {"input": "abc"}}}\n]}', 3, "openai/o3.prices.flex.input"),
    # the value's own line, not its model's (a price file's error named line 1 for a value on line 2)
    ('{"models": [{"name": "openai/o3",\n "prices": {"flex": {"input": 1, "output": "x"}}}]}', 2,
     "openai/o3.prices.flex.output"),
    ('{"models": [\n {"name": "openai/o3", "prices": {"flex": {"input": 1}}},\n'
     ' {"name": "openai/o4-mini",\n  "prices": {\n   "flex": {\n    "input": 1,\n    "cached_input": 2,\n'
     '    "output": -3}}}\n]}', 8, "openai/o4-mini.prices.flex.output"),
    ('{"models": [\n  {"name": "openai/o3",,}\n]}', 2, None),
])
def test_malformed_price_file_names_file_line_and_field(tmp_path, text, line, field):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(UserInputError) as ei:
        load_catalog(f, use_env=False)
    err = ei.value
    assert err.file == str(f) and err.line == line and err.field == field
    assert "\n" not in err.one_line()


@pytest.mark.parametrize("text,line,field", [
    # a [models.prices.TIER] table: the value's line
    ('[[models]]\nname = "openai/o3"\n[models.prices.flex]\ninput = "0.90"\noutput = "abc"\n', 5,
     "openai/o3.prices.flex.output"),
    # dotted keys, second model
    ('[[models]]\nname = "openai/o3"\nprices.flex.input = 1\n\n[[models]]\nname = "openai/o4-mini"\n'
     'prices.flex.input = 1\nprices.flex.output = -2\n', 8, "openai/o4-mini.prices.flex.output"),
    # an inline table on its own line
    ('[[models]]\nname = "openai/o3"\nprices = { flex = { input = "x" } }\n', 3, "openai/o3.prices.flex.input"),
    ('[[models]]\nname = "openai/o3"\nflex = "yes"\n', 3, "openai/o3.flex"),
])
def test_malformed_toml_price_file_names_the_values_line(tmp_path, text, line, field):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(UserInputError) as ei:
        load_catalog(f, use_env=False)
    assert (ei.value.line, ei.value.field) == (line, field), ei.value.one_line()
