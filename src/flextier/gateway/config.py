"""``gateway.toml``: the gateway's keys, upstreams and limits, checked before anything listens.

Why a file and not flags: a shared gateway has several callers, each with its own gateway
key, upstream credentials, default tier policy, allowed models and USD budgets; that is a
table, not a command line. Secrets never live in it: a gateway key is given either as the
name of an environment variable holding it (``key_env``) or as its SHA-256 (``key_sha256``),
and upstream credentials only as environment variable names (``[keys.NAME.upstream]``).

A bad file is one line naming the file, the line and the field (:class:`UserInputError`,
exit 2), before the gateway binds a port. See README "Gateway".
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserInputError
from ..timeparse import parse_duration

__all__ = ["GatewayConfig", "KeyConfig", "load_config", "single_user", "PROVIDERS", "DEFAULT_UPSTREAMS",
           "DEFAULT_MAX_BODY"]

PROVIDERS = ("openai", "gemini", "anthropic", "bedrock")
DEFAULT_UPSTREAMS = {"openai": "https://api.openai.com/v1", "gemini": "https://generativelanguage.googleapis.com",
                     "anthropic": "https://api.anthropic.com", "bedrock": ""}
DEFAULT_MAX_BODY = 32 * 1024 * 1024
TIERS = ("auto", "flex", "standard", "priority")


@dataclass(frozen=True)
class KeyConfig:
    """One gateway key: who it is, where its upstream credentials come from, what it may do."""

    name: str
    secret_sha256: str                       # the key itself is never kept
    upstream_env: Mapping[str, str] = field(default_factory=dict)   # provider -> env var name
    tier: str = "auto"                       # default tier policy when the request names none
    deadline: float | None = None            # default deadline, seconds
    max_wait: float | None = None            # default most seconds on flex before standard
    tiers: tuple[str, ...] = TIERS           # tiers the key may ask for (headers or body)
    models: tuple[str, ...] = ()             # allowed catalog names or wire ids ("" = all)
    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode("utf-8")).hexdigest()
        return hmac.compare_digest(digest, self.secret_sha256)

    def credential(self, provider: str) -> str | None:
        """The upstream credential for ``provider`` read from the environment now (never stored)."""
        env = self.upstream_env.get(provider)
        return os.environ.get(env) if env else None

    def allows_model(self, *names: str | None) -> bool:
        if not self.models:
            return True
        return any(n in self.models for n in names if n)


@dataclass(frozen=True)
class GatewayConfig:
    """The whole file (or the single-user defaults when there is none)."""

    path: str | None = None
    keys: tuple[KeyConfig, ...] = ()
    upstreams: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    max_body_bytes: int = DEFAULT_MAX_BODY
    ledger: str | None = None                # SQLite path; None = ./.flextier/gateway.db
    tier: str = "auto"
    deadline: float | None = None
    max_wait: float | None = None

    @property
    def single_user(self) -> bool:
        """No keys: the caller's own provider key is forwarded and only loopback may listen."""
        return not self.keys

    def find_key(self, presented: str | None) -> KeyConfig | None:
        if not presented:
            return None
        for k in self.keys:
            if k.matches(presented):
                return k
        return None


def single_user() -> GatewayConfig:
    return GatewayConfig()


def _line(text: str, table: str | None, key: str | None) -> int | None:
    """The line of ``key`` inside ``[table]`` (or of the table header), for the one-line error."""
    lines = text.splitlines()
    start = 0
    if table:
        pat = re.compile(r"^\s*\[+\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]+")
        for i, ln in enumerate(lines):
            if pat.match(ln):
                start = i
                break
        else:   # an inline table (upstream = { ... }): the line of its key in the parent table
            parent, _, last = table.rpartition(".")
            return _line(text, parent or None, last) if last else None
    if key is None:
        return start + 1
    kp = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for i in range(start + (1 if table else 0), len(lines)):
        if table and i > start and re.match(r"^\s*\[", lines[i]):
            break
        if kp.match(lines[i]):
            return i + 1
    return start + 1 if table else None


class _Reader:
    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def err(self, table: str | None, key: str | None, msg: str) -> UserInputError:
        fld = ".".join(x for x in (table, key) if x)
        return UserInputError(msg, file=self.path, line=_line(self.text, table, key), field=fld or None)

    def money(self, table: str, key: str, v: Any) -> Decimal | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.err(table, key, f"must be a USD amount, got {v!r}")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise self.err(table, key, f"must be a USD amount, got {v!r}") from None
        if not d.is_finite() or d < 0:
            raise self.err(table, key, f"must be zero or more, got {v!r}")
        return d

    def duration(self, table: str | None, key: str, v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
        try:
            return parse_duration(str(v), field=key)
        except UserInputError as e:
            raise self.err(table, key, e.message) from None

    def tier(self, table: str | None, key: str, v: Any) -> str:
        if v not in TIERS:
            raise self.err(table, key, f"must be one of {', '.join(TIERS)}, got {v!r}")
        return str(v)

    def strings(self, table: str, key: str, v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.err(table, key, f"must be a list of names, got {v!r}")
        return tuple(v)

    def unknown(self, table: str | None, d: Mapping[str, Any], known: set[str]) -> None:
        for k in d:
            if k not in known:
                raise self.err(table, k, f"unknown field (known: {', '.join(sorted(known))})")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_FIELDS = {"key_env", "key_sha256", "upstream", "tier", "deadline", "max_wait", "tiers", "models",
               "daily_usd", "monthly_usd"}
_TOP = {"gateway", "upstreams", "keys"}
_GATEWAY_FIELDS = {"max_body_bytes", "ledger", "tier", "deadline", "max_wait"}


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and check ``gateway.toml``; :class:`UserInputError` (file, line, field) when it is wrong.

    A key's ``key_env`` must name a set environment variable (the gateway could not check
    that key otherwise); its upstream variables may be unset (a 401 from upstream then says so).
    """
    env = os.environ if environ is None else environ
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except OSError as e:
        raise UserInputError(f"cannot read the gateway config: {e.strerror or e}", file=p) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise UserInputError(f"not valid TOML: {msg}", file=p, line=int(m.group(1)) if m else None) from None
    r = _Reader(p, text)
    r.unknown(None, data, _TOP)
    g = data.get("gateway", {})
    if not isinstance(g, dict):
        raise r.err("gateway", None, "must be a table")
    r.unknown("gateway", g, _GATEWAY_FIELDS)
    mb = g.get("max_body_bytes", DEFAULT_MAX_BODY)
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1024:
        raise r.err("gateway", "max_body_bytes", f"must be an integer of at least 1024, got {mb!r}")
    ledger = g.get("ledger")
    if ledger is not None and (not isinstance(ledger, str) or not ledger):
        raise r.err("gateway", "ledger", f"must be a file path, got {ledger!r}")
    ups = dict(DEFAULT_UPSTREAMS)
    u = data.get("upstreams", {})
    if not isinstance(u, dict):
        raise r.err("upstreams", None, "must be a table")
    r.unknown("upstreams", u, set(PROVIDERS))
    for prov, url in u.items():
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise r.err("upstreams", prov, f"must be an http(s) URL, got {url!r}")
        ups[prov] = url.rstrip("/")
    keys: list[KeyConfig] = []
    raw_keys = data.get("keys", {})
    if not isinstance(raw_keys, dict):
        raise r.err("keys", None, "must be a table of [keys.NAME] tables")
    seen: set[str] = set()
    for name, kd in raw_keys.items():
        t = f"keys.{name}"
        if not isinstance(kd, dict):
            raise r.err("keys", name, "must be a table")
        r.unknown(t, kd, _KEY_FIELDS)
        if ("key_env" in kd) == ("key_sha256" in kd):
            raise r.err(t, None, "give exactly one of key_env (an environment variable name) or key_sha256")
        if "key_env" in kd:
            ev = kd["key_env"]
            if not isinstance(ev, str) or not _ENV_NAME.match(ev):
                raise r.err(t, "key_env", f"must be an environment variable name, got {ev!r}")
            secret = env.get(ev)
            if not secret:
                raise r.err(t, "key_env", f"environment variable {ev} is not set")
            digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        else:
            digest = kd["key_sha256"]
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise r.err(t, "key_sha256", "must be 64 hex digits (sha256 of the key)")
            digest = digest.lower()
        if digest in seen:
            raise r.err(t, None, "the same key is given twice")
        seen.add(digest)
        up = kd.get("upstream", {})
        if not isinstance(up, dict):
            raise r.err(t, "upstream", "must be a table: provider = \"ENV_VAR_NAME\"")
        r.unknown(f"{t}.upstream", up, set(PROVIDERS))
        for prov, ev in up.items():
            if not isinstance(ev, str) or not _ENV_NAME.match(ev):
                raise r.err(f"{t}.upstream", prov,
                            "must be the NAME of an environment variable holding the credential, never the secret")
        tiers = r.strings(t, "tiers", kd["tiers"]) if "tiers" in kd else TIERS
        for x in tiers:
            if x not in TIERS:
                raise r.err(t, "tiers", f"{x!r} is not a tier ({', '.join(TIERS)})")
        tier = r.tier(t, "tier", kd.get("tier", g.get("tier", "auto")))
        if tier not in tiers and not (tier == "auto" and "flex" in tiers):
            raise r.err(t, "tier", f"{tier!r} is not among the key's tiers {list(tiers)}")
        keys.append(KeyConfig(
            name=str(name), secret_sha256=digest, upstream_env=dict(up), tier=tier,
            deadline=r.duration(t, "deadline", kd.get("deadline", g.get("deadline"))),
            max_wait=r.duration(t, "max_wait", kd.get("max_wait", g.get("max_wait"))),
            tiers=tiers, models=r.strings(t, "models", kd["models"]) if "models" in kd else (),
            daily_usd=r.money(t, "daily_usd", kd.get("daily_usd")),
            monthly_usd=r.money(t, "monthly_usd", kd.get("monthly_usd"))))
    return GatewayConfig(path=p, keys=tuple(keys), upstreams=ups, max_body_bytes=mb, ledger=ledger,
                         tier=r.tier("gateway", "tier", g.get("tier", "auto")),
                         deadline=r.duration("gateway", "deadline", g.get("deadline")),
                         max_wait=r.duration("gateway", "max_wait", g.get("max_wait")))
