"""The per-user history database: the only module that runs SQL on it.

Why a separate file from the job stores: a job store lives and dies with its job; the history
outlives every job, gateway and wrapped client, and is shared by all of them (several processes
may add to it at once; each write is an additive UPSERT, so they commute). Why aggregates and not
raw attempts: the forecast needs counts per hour of week, and counts hold no prompts, outputs or
keys by construction (docs/history.md).

Location (:func:`default_history_path`): ``$FLEXTIER_HISTORY`` if set (``off`` turns recording
off), else ``$XDG_DATA_HOME/flextier/history.db`` (``~/.local/share/flextier/history.db``) on
Linux, ``~/Library/Application Support/flextier/history.db`` on macOS and
``%LOCALAPPDATA%\\flextier\\history.db`` on Windows. Emulated runs go to a sibling file,
``history.emulated.db``, and each file records its domain: opening one for the other domain is an
error, so emulated and real history never mix.
"""
from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .._migrate import apply_migrations
from ..errors import StoreDamaged, UserInputError
from .schema import MIGRATIONS, N_BUCKETS

__all__ = ["HistoryDB", "CellRow", "default_history_path", "HISTORY_ENV", "REAL", "EMULATED", "history_disabled"]

HISTORY_ENV = "FLEXTIER_HISTORY"
REAL, EMULATED = "real", "emulated"
_COUNT_COLS = ("attempts", "ok", "sheds", "timeouts", "errors", "active_s", "out_tokens") + tuple(
    f"l{i}" for i in range(N_BUCKETS))


def history_disabled() -> bool:
    """``FLEXTIER_HISTORY=off`` (or ``0``/``none``): record nothing, forecast nothing."""
    return os.environ.get(HISTORY_ENV, "").strip().lower() in ("off", "0", "none", "false")


def _data_dir() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "flextier"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "flextier"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "flextier"


_PATHS: dict[tuple[str | None, ...], Path] = {}


def default_history_path(domain: str = REAL) -> Path:
    """Where the history of ``domain`` (``"real"`` or ``"emulated"``) lives (see the module doc).

    Asked once per recorded call (wrap, the gateway), so the answer is kept per value of the
    environment it depends on: a changed variable still moves the history at once."""
    g = os.environ.get
    ek = (domain, g(HISTORY_ENV), g("XDG_DATA_HOME"), g("LOCALAPPDATA"), g("HOME"), g("USERPROFILE"))
    got = _PATHS.get(ek)
    if got is None:
        got = _PATHS[ek] = _history_path(domain)
    return got


def _history_path(domain: str) -> Path:
    if domain not in (REAL, EMULATED):
        raise ValueError(f"domain must be {REAL!r} or {EMULATED!r}")
    env = os.environ.get(HISTORY_ENV, "").strip()
    base = Path(env).expanduser() if env and not history_disabled() else _data_dir() / "history.db"
    if domain == EMULATED:
        return base.with_name(f"{base.stem}.emulated{base.suffix or '.db'}")
    return base


@dataclass
class CellRow:
    """One stored cell: a key, a week and an hour of week, with its counts."""

    provider: str
    model: str
    tier: str
    week: int
    how: int
    attempts: float = 0.0
    ok: float = 0.0
    sheds: float = 0.0
    timeouts: float = 0.0
    errors: float = 0.0
    active_s: float = 0.0
    out_tokens: float = 0.0
    hist: list[float] = field(default_factory=lambda: [0.0] * N_BUCKETS)

    def values(self) -> tuple[float, ...]:
        return (self.attempts, self.ok, self.sheds, self.timeouts, self.errors, self.active_s,
                self.out_tokens, *self.hist)


class HistoryDB:
    """One history file of one domain. Cheap to open; use one per thread."""

    def __init__(self, path: str | os.PathLike[str], domain: str = REAL, *, create: bool = True) -> None:
        if domain not in (REAL, EMULATED):
            raise ValueError(f"domain must be {REAL!r} or {EMULATED!r}")
        self.path = Path(path)
        self.domain = domain
        if not create and not self.path.exists():
            raise UserInputError("no history yet", file=str(self.path))
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
            self._check_domain()
        except (sqlite3.DatabaseError, OSError) as exc:
            try:
                self.db.close()
            except Exception:  # pragma: no cover
                pass
            raise StoreDamaged(f"cannot use the history file: {exc}", file=str(self.path)) from None

    # -- schema -------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Apply, in order, each migration this file has not recorded (:func:`flextier._migrate.apply_migrations`)."""
        apply_migrations(self.db, MIGRATIONS)

    def _check_domain(self) -> None:
        self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('domain', ?)", (self.domain,))
        got = self.db.execute("SELECT value FROM meta WHERE key = 'domain'").fetchone()[0]
        if got != self.domain:
            self.db.close()
            raise UserInputError(f"this history file holds {got} history, not {self.domain}: "
                                 "emulated and real runs are kept in separate files", file=str(self.path))

    def schema_version(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM schema_migrations").fetchone()[0])

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:  # pragma: no cover
            pass

    def __enter__(self) -> "HistoryDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------
    def add(self, rows: Iterable[CellRow]) -> int:
        """Add counts into their cells (one transaction; additive, so concurrent writers commute)."""
        cols = ", ".join(_COUNT_COLS)
        marks = ", ".join("?" for _ in _COUNT_COLS)
        upd = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COUNT_COLS)
        sql = (f"INSERT INTO cells (provider, model, tier, week, how, {cols}) VALUES (?, ?, ?, ?, ?, {marks}) "
               f"ON CONFLICT (provider, model, tier, week, how) DO UPDATE SET {upd}")
        data = [(r.provider, r.model, r.tier, int(r.week), int(r.how), *r.values()) for r in rows]
        if not data:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(sql, data)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(data)

    def prune(self, before_week: int) -> int:
        """Drop cells older than ``before_week`` (their recency weight is negligible)."""
        cur = self.db.execute("DELETE FROM cells WHERE week < ?", (int(before_week),))
        return cur.rowcount

    # -- reads --------------------------------------------------------------------------
    def rows(self, provider: str, model: str, tier: str = "flex") -> Iterator[CellRow]:
        cols = ", ".join(_COUNT_COLS)
        cur = self.db.execute(f"SELECT provider, model, tier, week, how, {cols} FROM cells "
                              "WHERE provider = ? AND model = ? AND tier = ? ORDER BY week, how",
                              (provider, model, tier))
        for r in cur:
            v = [float(x) for x in r[5:]]
            yield CellRow(r[0], r[1], r[2], int(r[3]), int(r[4]), *v[:7], hist=v[7:])

    def keys(self) -> list[tuple[str, str, str, float]]:
        """(provider, model, tier, attempts) for every key with history."""
        return [(r[0], r[1], r[2], float(r[3])) for r in self.db.execute(
            "SELECT provider, model, tier, SUM(attempts) FROM cells GROUP BY provider, model, tier "
            "ORDER BY provider, model, tier")]
