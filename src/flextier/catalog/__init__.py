"""The price and capability catalog: one dated, sourced entry per model.

Prices live in ``models.json`` beside this file, never in code. A user file given with
``--prices FILE`` or ``FLEXTIER_PRICES`` is layered on top (negotiated prices, new
models). Prices are kept as :class:`~decimal.Decimal` so money stays exact; an
unconfirmed price is ``None`` and is shown as "unknown", never as 0.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from .locate import PriceFileLocator
from .peak import PeakHours, parse_peak_hours
from ..errors import UnknownModel, UserInputError
from ..tiers import TIERS

PROVIDERS: tuple[str, ...] = ("openai", "gemini", "bedrock", "anthropic", "deepseek")
PRICES_ENV = "FLEXTIER_PRICES"
_PRICE_FIELDS = ("input", "cached_input", "output")


@dataclass(frozen=True)
class TierPrices:
    """USD per 1M tokens at one tier. ``None`` = unknown."""

    input: Decimal | None
    cached_input: Decimal | None
    output: Decimal | None

    def as_dict(self) -> dict[str, str | None]:
        return {k: (None if getattr(self, k) is None else str(getattr(self, k))) for k in _PRICE_FIELDS}


@dataclass(frozen=True)
class LongContext:
    """Uplift applied when a prompt is longer than ``above_input_tokens``."""

    above_input_tokens: int
    input_multiplier: Decimal
    output_multiplier: Decimal


@dataclass(frozen=True)
class ModelEntry:
    """One model: who serves it, which tiers it has, what each costs, and where that came from."""

    name: str                       # canonical "provider/model-id"
    provider: str
    model_id: str
    aliases: tuple[str, ...]
    supports_flex: bool
    supports_batch: bool
    prices: Mapping[str, TierPrices | None]
    cache_discount_stacks: Mapping[str, bool]
    source: str
    source_date: str
    long_context: LongContext | None = None
    max_output_tokens: int | None = None
    """The most output tokens (reasoning included) one answer can have; None = unknown. A
    ``--max-cost`` job bounds a request that sets no ``max_tokens`` of its own by this."""
    max_output_source: str = ""
    peak_hours: PeakHours | None = None
    """Published peak windows of a clock-priced model (DeepSeek): outside them a request pays the
    ``offpeak`` tier's prices (see :func:`flextier.cost.clock_tier`)."""

    def tier_prices(self, tier: str) -> TierPrices | None:
        """The prices at ``tier``, or None when the tier is not offered or not priced."""
        return self.prices.get(tier)

    def supports(self, tier: str) -> bool:
        if tier == "flex":
            return self.supports_flex
        if tier == "batch":
            return self.supports_batch
        if tier == "standard":
            return True
        return self.prices.get(tier) is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "provider": self.provider, "model_id": self.model_id,
            "aliases": list(self.aliases), "flex": self.supports_flex, "batch": self.supports_batch,
            "prices": {t: (p.as_dict() if p else None) for t, p in self.prices.items()},
            "cache_discount_stacks": dict(self.cache_discount_stacks),
            "source": self.source, "source_date": self.source_date,
            "max_output_tokens": self.max_output_tokens, "max_output_source": self.max_output_source,
            **({"peak_hours": self.peak_hours.as_dict()} if self.peak_hours else {}),
        }


def _dec(value: Any, *, where: str, file: str, line: int | None) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise UserInputError("price must be a number or null", file=file, line=line, field=where)
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise UserInputError(f"price {value!r} is not a number", file=file, line=line, field=where) from None
    if not d.is_finite() or d < 0:
        raise UserInputError(f"price {value!r} must be a finite number >= 0", file=file, line=line, field=where)
    return d


def _line_of(text: str, needle: str) -> int | None:
    """Best-effort line number of ``needle`` in a price file, for error messages."""
    idx = text.find(needle)
    return None if idx < 0 else text.count("\n", 0, idx) + 1


class Catalog:
    """Models by canonical name and alias, with fuzzy suggestions for typos."""

    def __init__(self, entries: Iterable[ModelEntry], *, read_on: str = "", sources: tuple[str, ...] = ()) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self.read_on = read_on
        self.sources = sources
        self.provider_rules: dict[str, Any] = {}
        for e in entries:
            self._entries[e.name] = e
        self._reindex()

    def _reindex(self) -> None:
        self._names: dict[str, str] = {}
        for e in self._entries.values():
            self._names[e.name.lower()] = e.name
            for a in e.aliases:
                self._names[a.lower()] = e.name

    # -- lookup -----------------------------------------------------------------
    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def models(self, provider: str | None = None) -> list[ModelEntry]:
        return [e for e in self._entries.values() if provider is None or e.provider == provider]

    def resolve(self, name: str, *, field: str = "model", file: str | None = None,
                line: int | None = None) -> ModelEntry:
        """Find a model by ``provider/model-id`` or alias (case-insensitive).

        A bare model id is accepted when exactly one provider has it. Raises
        :class:`UnknownModel` with the closest known names otherwise.
        """
        key = (name or "").strip().lower()
        if key in self._names:
            return self._entries[self._names[key]]
        if "/" not in key:
            hits = {self._names[n] for n in self._names if n.split("/", 1)[1] == key}
            if len(hits) == 1:
                return self._entries[hits.pop()]
        close = difflib.get_close_matches(key, list(self._names), n=3, cutoff=0.4)
        raise UnknownModel(name, [self._names[c] if c == self._names[c].lower() else c for c in close],
                           field=field, file=file, line=line)

    def find_wire(self, provider: str, model_id: str) -> ModelEntry | None:
        """Find the entry for a model id as it appears on the wire (no provider prefix).

        Accepts dated snapshots such as ``gpt-5.4-2026-03-05`` by stripping a date suffix,
        and Bedrock ids with or without the ``us.`` inference-profile prefix.
        """
        mid = model_id.strip().lower()
        if mid.startswith("models/"):
            mid = mid[len("models/"):]
        for cand in (mid, re.sub(r"-\d{4}-\d{2}-\d{2}$", "", mid)):
            key = f"{provider}/{cand}"
            if key in self._names:
                return self._entries[self._names[key]]
        if provider == "bedrock":
            for pre in ("us.", "eu.", "apac.", "global."):
                if mid.startswith(pre) and f"bedrock/{mid[len(pre):]}" in self._names:
                    return self._entries[self._names[f"bedrock/{mid[len(pre):]}"]]
            if f"bedrock/us.{mid}" in self._names:
                return self._entries[self._names[f"bedrock/us.{mid}"]]
        return None

    # -- building ---------------------------------------------------------------
    def overlay(self, other: "Catalog") -> "Catalog":
        """A new catalog: ``other``'s entries replace or add to ours."""
        merged = dict(self._entries)
        merged.update({e.name: e for e in other})
        cat = Catalog(merged.values(), read_on=other.read_on or self.read_on,
                      sources=self.sources + other.sources)
        cat.provider_rules = {**self.provider_rules, **other.provider_rules}
        return cat


def _parse(data: Any, *, file: str, text: str, base: Catalog | None = None) -> Catalog:
    if not isinstance(data, dict):
        raise UserInputError("top level must be an object with a 'models' list", file=file, line=1, field="models")
    provider_rules = dict(base.provider_rules) if base is not None else {}
    for prov, rule in (data.get("providers", {}) or {}).items():
        if isinstance(rule, dict):
            provider_rules[prov] = rule
    models = data.get("models")
    if not isinstance(models, list):
        raise UserInputError("'models' must be a list", file=file, line=_line_of(text, '"models"') or 1, field="models")
    entries: list[ModelEntry] = []
    loc = PriceFileLocator(text, [m.get("name") if isinstance(m, dict) and isinstance(m.get("name"), str) else None
                                  for m in models])
    for i, m in enumerate(models):
        line = loc.model_line(i)
        at = lambda *path: loc.key_line(i, *path) or line  # noqa: E731  (the line of that field)
        fld = f"models[{i}]"
        if not isinstance(m, dict):
            raise UserInputError("each model must be an object", file=file, line=line, field=fld)
        name = m.get("name")
        if not isinstance(name, str) or "/" not in name:
            raise UserInputError("'name' must be 'provider/model-id'", file=file, line=at("name"), field=f"{fld}.name")
        provider, model_id = name.split("/", 1)
        if provider not in PROVIDERS:
            raise UserInputError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}",
                                 file=file, line=at("name"), field=f"{fld}.name")
        existing = base.find_wire(provider, model_id) if base else None
        if existing is None and base is not None:
            try:
                existing = base.resolve(name)
            except UnknownModel:
                existing = None
        prices_in = m.get("prices", {} if existing else None)
        if not isinstance(prices_in, dict):
            raise UserInputError("'prices' must be an object of tiers", file=file, line=at("prices"), field=f"{fld}.prices")
        prices: dict[str, TierPrices | None] = dict(existing.prices) if existing else {}
        for tier, block in prices_in.items():
            if tier not in TIERS:
                raise UserInputError(f"unknown tier {tier!r} (tiers: {', '.join(TIERS)})",
                                     file=file, line=at("prices", tier), field=f"{name}.prices.{tier}")
            if block is None:
                prices[tier] = None
                continue
            if not isinstance(block, dict):
                raise UserInputError("a tier's prices must be an object or null", file=file, line=at("prices", tier),
                                     field=f"{name}.prices.{tier}")
            bad = set(block) - set(_PRICE_FIELDS)
            if bad:
                raise UserInputError(f"unknown price field {sorted(bad)[0]!r} (fields: {', '.join(_PRICE_FIELDS)})",
                                     file=file, line=at("prices", tier, sorted(bad)[0]), field=f"{name}.prices.{tier}")
            vals = {}
            for f_ in _PRICE_FIELDS:
                if f_ in block:
                    vals[f_] = _dec(block[f_], where=f"{name}.prices.{tier}.{f_}", file=file,
                                    line=at("prices", tier, f_))
                else:
                    vals[f_] = _MISSING
            prices[tier] = vals  # type: ignore[assignment]
        stacks = dict(existing.cache_discount_stacks) if existing else {}
        stacks.update((provider_rules.get(provider) or {}).get("cache_discount_stacks", {}))
        if isinstance(m.get("cache_discount_stacks"), dict):
            stacks.update(m["cache_discount_stacks"])
        prices = _resolve_cached(prices, stacks)
        for flag in ("flex", "batch"):
            if flag in m and not isinstance(m[flag], bool):
                raise UserInputError(f"'{flag}' must be true or false", file=file, line=at(flag), field=f"{name}.{flag}")
        lc = m.get("long_context")
        long_context = existing.long_context if existing else None
        if isinstance(lc, dict):
            try:
                long_context = LongContext(int(lc["above_input_tokens"]), Decimal(str(lc["input_multiplier"])),
                                           Decimal(str(lc["output_multiplier"])))
            except (KeyError, ValueError, InvalidOperation):
                raise UserInputError("long_context needs above_input_tokens, input_multiplier, output_multiplier",
                                     file=file, line=at("long_context"), field=f"{name}.long_context") from None
        max_out = existing.max_output_tokens if existing else None
        if "max_output_tokens" in m:
            max_out = m["max_output_tokens"]
            if max_out is not None and (isinstance(max_out, bool) or not isinstance(max_out, int) or max_out <= 0):
                raise UserInputError(f"max_output_tokens must be a positive integer or null, got {max_out!r}",
                                     file=file, line=at("max_output_tokens"),
                                     field=f"{name}.max_output_tokens")
        aliases = m.get("aliases", list(existing.aliases) if existing else [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise UserInputError("'aliases' must be a list of strings", file=file, line=at("aliases"),
                                 field=f"{name}.aliases")
        peak = existing.peak_hours if existing else None
        if m.get("peak_hours") is not None:
            peak = parse_peak_hours(m["peak_hours"], where=f"{name}.peak_hours", file=file, line=at("peak_hours"))
        if peak is not None and prices.get("offpeak") is None:
            raise UserInputError("a model with peak_hours needs an 'offpeak' price block", file=file,
                                 line=at("peak_hours"), field=f"{name}.prices.offpeak")
        entries.append(ModelEntry(
            name=existing.name if existing else name, provider=provider,
            model_id=existing.model_id if existing else model_id,
            aliases=tuple(aliases),
            supports_flex=m.get("flex", existing.supports_flex if existing else prices.get("flex") is not None),
            supports_batch=m.get("batch", existing.supports_batch if existing else prices.get("batch") is not None),
            prices=prices, cache_discount_stacks=stacks,
            source=str(m.get("source", existing.source if existing else file)),
            source_date=str(m.get("source_date", existing.source_date if existing else data.get("read_on", ""))),
            long_context=long_context,
            max_output_tokens=max_out,
            max_output_source=str(m.get("max_output_source", existing.max_output_source if existing else "")),
            peak_hours=peak,
        ))
    cat = Catalog(entries, read_on=str(data.get("read_on", "")), sources=(file,))
    cat.provider_rules = provider_rules
    return cat


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


def _resolve_cached(prices: dict[str, Any], stacks: Mapping[str, bool]) -> dict[str, TierPrices | None]:
    """Fill a tier's omitted cached-input price from the stacking rule (never a guess).

    stacks=True: the tier's discount on input applies to the standard cached rate too.
    stacks=False: cached tokens cost the standard cached rate at this tier.
    No rule, or any input unknown: None ("unknown").
    """
    out: dict[str, TierPrices | None] = {}
    std = prices.get("standard")
    std_vals = std if isinstance(std, dict) else (std.__dict__ if isinstance(std, TierPrices) else None)
    for tier, block in prices.items():
        if block is None or isinstance(block, TierPrices):
            out[tier] = block
            continue
        vals = {k: (None if v is _MISSING and k != "cached_input" else v) for k, v in block.items()}
        if vals["cached_input"] is _MISSING:
            vals["cached_input"] = None
            if tier == "standard":
                vals["cached_input"] = vals["input"]  # no caching discount stated: cached tokens cost input
            elif std_vals is not None and tier in stacks:
                s_in, s_cached = std_vals.get("input"), std_vals.get("cached_input")
                if s_cached is not None and s_cached is not _MISSING:
                    if not stacks[tier]:
                        vals["cached_input"] = s_cached
                    elif vals["input"] is not None and s_in:
                        vals["cached_input"] = s_cached * vals["input"] / s_in
        out[tier] = TierPrices(**vals)
    return out


def _load_text(path: Path) -> tuple[Any, str]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError("price file not found", file=file, field="--prices") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read price file: {exc.__class__.__name__}", file=file, field="--prices") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise UserInputError(f"malformed TOML: {str(exc).split(' (at')[0]}", file=file,
                                 line=int(m.group(1)) if m else None) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise UserInputError(f"malformed JSON: {exc.msg}", file=file, line=exc.lineno) from None


def load_builtin() -> Catalog:
    """The catalog shipped inside the package."""
    text = resources.files(__package__).joinpath("models.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), file="flextier/catalog/models.json", text=text)


def load_catalog(prices: str | os.PathLike[str] | None = None, *, use_env: bool = True) -> Catalog:
    """The built-in catalog, overlaid with ``FLEXTIER_PRICES`` and then ``prices`` if given."""
    cat = load_builtin()
    paths: list[str] = []
    if use_env and os.environ.get(PRICES_ENV):
        paths.append(os.environ[PRICES_ENV])
    if prices:
        paths.append(os.fspath(prices))
    for p in paths:
        data, text = _load_text(Path(p))
        cat = cat.overlay(_parse(data, file=p, text=text, base=cat))
    return cat


_default: Catalog | None = None


def default_catalog() -> Catalog:
    """A process-wide catalog (built-in plus ``FLEXTIER_PRICES``), loaded once."""
    global _default
    if _default is None:
        _default = load_catalog()
    return _default


def set_default_catalog(catalog: Catalog | None) -> None:
    """Replace (or, with None, reset) the process-wide catalog, e.g. after ``--prices``."""
    global _default
    _default = catalog


__all__ = ["Catalog", "ModelEntry", "TierPrices", "LongContext", "PROVIDERS", "load_catalog",
           "load_builtin", "default_catalog", "set_default_catalog"]
