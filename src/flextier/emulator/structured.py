"""Seeded JSON instances of a JSON Schema: what the emulator answers for structured output.

Why hand-written: the two maintained generators were measured on a pydantic schema
with ``$defs``, an ``Optional`` recursive field and length bounds. ``jsf`` 0.11 is
correct but takes 4-10 ms per instance (Faker), draws from the process-global
``random`` (so a per-request seed means reseeding shared state) and knows nothing
of Gemini's OpenAPI dialect (``type: "OBJECT"``, ``nullable``); at 2,000 req/s
that is the whole CPU budget several times over. ``hypothesis-jsonschema`` takes
~270 ms per ``example()``, is not seedable per call, and refuses recursive
``$ref``. This generator covers what OpenAI strict mode, pydantic, Gemini's
``responseSchema`` and tool parameter schemas use — ``type`` (also lists and
upper case), ``enum``/``const``, ``properties``/``required``/``additionalProperties``,
``items``/``prefixItems`` with ``minItems``/``maxItems``/``uniqueItems``, numeric and
length bounds, ``multipleOf``, cheap string ``format``s, ``$ref`` into
``$defs``/``definitions`` (recursion bounded by depth), ``anyOf``/``oneOf``/``allOf``
and ``nullable`` — in tens of microseconds, from a caller-owned ``random.Random``.
``pattern`` is not honoured (a regex generator would cost more than the rest).
"""
from __future__ import annotations

import ast
import random
import string
from typing import Any

__all__ = ["instance", "normalize_gemini"]

_WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "flint", "grove", "harbor", "iris", "juniper",
          "kestrel", "lumen", "maple", "north", "onyx", "pine", "quartz", "river", "sage", "tundra",
          "umber", "vale", "willow", "xenon", "yarrow", "zephyr")
_MAX_DEPTH = 6          # past this depth: no optional fields, shortest arrays, non-recursive branches
_KEYS_CAMEL = {"max_items": "maxItems", "min_items": "minItems", "max_length": "maxLength",
               "min_length": "minLength", "max_properties": "maxProperties", "min_properties": "minProperties",
               "any_of": "anyOf", "property_ordering": "propertyOrdering", "additional_properties":
               "additionalProperties", "prefix_items": "prefixItems"}


_HINT_KEYS = frozenset(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                        "maxLength", "minItems", "maxItems", "uniqueItems", "prefixItems", "minProperties",
                        "maxProperties", "format"))


def description_hints(description: str) -> dict[str, Any]:
    """Constraints a client moved into a description, e.g. ``"Qty\n\n{maximum: 50, minimum: 1}"``.

    Anthropic's SDK (``messages.parse``, strict tools) strips keywords the API does not
    enforce and appends them this way; a real model reads and honours them, so the
    emulated one does too. Returns only known keywords with literal values.
    """
    if not description.endswith("}"):
        return {}
    start = description.rfind("\n{") + 1 if "\n{" in description else (0 if description.startswith("{") else -1)
    if start < 0:
        return {}
    body = description[start + 1:-1]
    out: dict[str, Any] = {}
    depth, item = 0, []
    parts: list[str] = []
    for ch in body:                      # split on top-level commas
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(item))
            item = []
        else:
            item.append(ch)
    parts.append("".join(item))
    for part in parts:
        key, sep, raw = part.strip().partition(": ")
        if sep and key in _HINT_KEYS:
            try:
                out[key] = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                if key == "format":
                    out[key] = raw.strip().strip("'\"")
    return out


def normalize_gemini(schema: Any) -> Any:
    """Gemini's OpenAPI-subset schema (``OBJECT``, ``nullable``, snake_case keys) as JSON Schema.

    ``nullable: true`` becomes ``anyOf [.., null]`` so validators and the generator agree.
    """
    if isinstance(schema, list):
        return [normalize_gemini(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for k, v in schema.items():
        k = _KEYS_CAMEL.get(k, k)
        if k == "type" and isinstance(v, str):
            v = v.lower()
            if v == "type_unspecified":
                continue
        elif k in ("properties", "$defs", "defs", "definitions") and isinstance(v, dict):
            v = {name: normalize_gemini(s) for name, s in v.items()}
            k = "$defs" if k == "defs" else k
        elif isinstance(v, (dict, list)) and k not in ("enum", "required", "propertyOrdering", "example",
                                                          "default"):
            v = normalize_gemini(v)
        out[k] = v
    if out.pop("nullable", False) is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def instance(schema: Any, rng: random.Random) -> Any:
    """One value valid against ``schema``, drawn from ``rng`` (same rng state, same value)."""
    root = schema if isinstance(schema, dict) else {}
    return _Gen(root, rng).value(schema, 0)


class _Gen:
    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    # -- references ------------------------------------------------------------------------
    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            return {}
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return {}
        return node

    def deref(self, s: Any, depth: int = 0) -> Any:
        while isinstance(s, dict) and "$ref" in s and depth < 32:
            target = self.resolve(s["$ref"])
            rest = {k: v for k, v in s.items() if k != "$ref"}
            s = {**target, **rest} if rest and isinstance(target, dict) else target
            depth += 1
        return s

    def merged(self, s: dict[str, Any]) -> dict[str, Any]:
        """``allOf`` folded into one schema (properties and required united)."""
        base = {k: v for k, v in s.items() if k != "allOf"}
        for part in s.get("allOf") or []:
            part = self.deref(part)
            if not isinstance(part, dict):
                continue
            part = self.merged(part) if "allOf" in part else part
            for k, v in part.items():
                if k == "properties" and isinstance(v, dict):
                    base["properties"] = {**base.get("properties", {}), **v}
                elif k == "required" and isinstance(v, list):
                    base["required"] = list(dict.fromkeys([*base.get("required", []), *v]))
                else:
                    base.setdefault(k, v)
        return base

    def recursive(self, s: Any, seen: int = 0) -> bool:
        """Does choosing ``s`` lead (directly) to a ``$ref``? Used to stop recursion when deep."""
        if isinstance(s, dict):
            if "$ref" in s:
                return True
            return seen < 2 and any(self.recursive(v, seen + 1) for k, v in s.items()
                                    if k in ("items", "anyOf", "oneOf", "allOf", "properties"))
        if isinstance(s, list):
            return any(self.recursive(v, seen) for v in s)
        return False

    # -- values ------------------------------------------------------------------------------
    def value(self, s: Any, depth: int) -> Any:
        if depth > 48:          # a schema whose every instance is infinite: give up quietly
            return None
        s = self.deref(s)
        if s is True or s is None or s == {}:
            return self.word()
        if s is False or not isinstance(s, dict):
            return None
        if "allOf" in s:
            s = self.merged(s)
        desc = s.get("description")
        if isinstance(desc, str) and desc.endswith("}"):
            hints = description_hints(desc)
            if hints:
                s = {**hints, **s}
        if "const" in s:
            return s["const"]
        enum = s.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.rng.randrange(len(enum))]
        branches = s.get("anyOf") or s.get("oneOf")
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf", "title", "description",
                                                           "default")}
            choices = branches
            if depth >= _MAX_DEPTH:
                flat = [b for b in branches if not self.recursive(b)]
                choices = flat or branches
            pick = choices[self.rng.randrange(len(choices))]
            pick = self.deref(pick)
            if rest and isinstance(pick, dict):
                pick = {**rest, **pick}
            return self.value(pick, depth + 1)
        t = s.get("type")
        if isinstance(t, list):
            ts = [x for x in t if x != "null"] or t
            t = ts[self.rng.randrange(len(ts))]
        if t is None:
            if "properties" in s or "additionalProperties" in s:
                t = "object"
            elif "items" in s or "prefixItems" in s:
                t = "array"
            else:
                return self.word()
        if t == "object":
            return self.obj(s, depth)
        if t == "array":
            return self.arr(s, depth)
        if t == "string":
            return self.string(s)
        if t == "integer":
            return self.integer(s)
        if t == "number":
            return self.number(s)
        if t == "boolean":
            return self.rng.random() < 0.5
        if t == "null":
            return None
        return self.word()

    def word(self) -> str:
        return _WORDS[self.rng.randrange(len(_WORDS))]

    def obj(self, s: dict[str, Any], depth: int) -> dict[str, Any]:
        props = s.get("properties") or {}
        required = set(s.get("required") or [])
        order = s.get("propertyOrdering")
        names = list(order) + [p for p in props if p not in order] if isinstance(order, list) else list(props)
        out: dict[str, Any] = {}
        for name in names:
            if name not in props:
                continue
            sub = props[name]
            if name not in required:
                if depth >= _MAX_DEPTH or self.rng.random() < 0.3:
                    continue
            out[name] = self.value(sub, depth + 1)
        for name in required:                # required names the properties do not describe
            if name not in out:
                out[name] = self.word()
        extra = s.get("additionalProperties")
        lo = int(s.get("minProperties") or 0)
        want = lo - len(out)
        if isinstance(extra, dict) and not props:
            want = max(want, 1 if depth >= _MAX_DEPTH else 1 + self.rng.randrange(2))
        if want > 0 and extra is not False:
            sub = extra if isinstance(extra, dict) else {"type": "string"}
            i = 0
            while want > 0 and i < 64:
                key = f"{self.word()}_{i}"
                i += 1
                if key not in out:
                    out[key] = self.value(sub, depth + 1)
                    want -= 1
        return out

    def arr(self, s: dict[str, Any], depth: int) -> list[Any]:
        prefix = s.get("prefixItems")
        if isinstance(prefix, list):
            return [self.value(p, depth + 1) for p in prefix]
        lo = int(s.get("minItems") or 0)
        hi = s.get("maxItems")
        hi = int(hi) if isinstance(hi, (int, float)) else lo + 3
        hi = max(lo, hi)
        if depth >= _MAX_DEPTH:
            n = lo
        else:
            n = self.rng.randint(max(lo, min(1, hi)), min(hi, max(lo, 3)))
        item = s.get("items", {})
        out: list[Any] = []
        unique = bool(s.get("uniqueItems"))
        tries = 0
        while len(out) < n and tries < n * 8 + 8:
            tries += 1
            v = self.value(item, depth + 1)
            if unique and v in out:
                continue
            out.append(v)
        return out

    def string(self, s: dict[str, Any]) -> str:
        fmt = s.get("format")
        if isinstance(fmt, str):
            v = self.formatted(fmt)
            if v is not None:
                return v
        lo = int(s.get("minLength") or 0)
        hi = s.get("maxLength")
        n_words = 1 + self.rng.randrange(3)
        v = " ".join(self.word() for _ in range(n_words))
        while len(v) < lo:
            v += " " + self.word()
        if isinstance(hi, (int, float)):
            v = v[:int(hi)]
        if len(v) < lo:                       # only when maxLength < the padding above: fill with letters
            v += "".join(self.rng.choice(string.ascii_lowercase) for _ in range(lo - len(v)))
        return v

    def formatted(self, fmt: str) -> str | None:
        r = self.rng
        if fmt == "date-time":
            return f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:" \
                   f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
        if fmt == "date":
            return f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if fmt == "time":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
        if fmt == "duration":
            return f"PT{r.randint(1, 59)}M"
        if fmt in ("email", "idn-email"):
            return f"{self.word()}@example.com"
        if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            return f"https://example.com/{self.word()}"
        if fmt in ("hostname", "idn-hostname"):
            return f"{self.word()}.example.com"
        if fmt == "uuid":
            h = f"{r.getrandbits(128):032x}"
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        if fmt == "ipv4":
            return ".".join(str(r.randint(1, 254)) for _ in range(4))
        if fmt == "ipv6":
            return ":".join(f"{r.getrandbits(16):x}" for _ in range(8))
        return None

    def bounds(self, s: dict[str, Any], default_lo: float, default_hi: float) -> tuple[float, float, bool, bool]:
        lo, hi = s.get("minimum"), s.get("maximum")
        xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        lo_ex = hi_ex = False
        if isinstance(xlo, (int, float)) and not isinstance(xlo, bool) and (lo is None or xlo >= lo):
            lo, lo_ex = xlo, True
        if isinstance(xhi, (int, float)) and not isinstance(xhi, bool) and (hi is None or xhi <= hi):
            hi, hi_ex = xhi, True
        if lo is None and hi is None:
            lo, hi = default_lo, default_hi
        elif lo is None:
            lo = min(default_lo, hi - 100)
        elif hi is None:
            hi = max(default_hi, lo + 100)
        return float(lo), float(hi), lo_ex, hi_ex

    def integer(self, s: dict[str, Any]) -> int:
        import math
        lo, hi, lo_ex, hi_ex = self.bounds(s, 0, 100)
        a = math.floor(lo) + 1 if lo_ex and lo == math.floor(lo) else math.ceil(lo)
        b = math.ceil(hi) - 1 if hi_ex and hi == math.ceil(hi) else math.floor(hi)
        step = s.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-a // step) * step
            count = (b - first) // step + 1
            return int(first + step * self.rng.randrange(count)) if count > 0 else int(first)
        return self.rng.randint(int(a), int(max(a, b)))

    def number(self, s: dict[str, Any]) -> float | int:
        lo, hi, lo_ex, hi_ex = self.bounds(s, 0.0, 100.0)
        step = s.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0:
            import math
            first = math.ceil(lo / step) + (1 if lo_ex and (lo / step).is_integer() else 0)
            last = math.floor(hi / step) - (1 if hi_ex and (hi / step).is_integer() else 0)
            k = self.rng.randint(first, max(first, last))
            v = k * step
            return int(v) if float(v).is_integer() else round(v, 10)
        span = hi - lo
        for _ in range(8):
            v = round(lo + self.rng.random() * span, 2)
            if lo <= v <= hi and not (lo_ex and v == lo) and not (hi_ex and v == hi):
                return v
        return (lo + hi) / 2
