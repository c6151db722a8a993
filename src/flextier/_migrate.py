"""Numbered SQLite migrations, applied in order: one runner for every database flextier owns.

Why one home: the job store (``jobs/schema.py``), the per-user history (``history/schema.py``) and
the gateway ledger each keep a list of ``(id, name, sql)`` migrations, and each must apply the
missing ones the same way: one ``BEGIN IMMEDIATE`` transaction per version, the id recorded in
``schema_migrations`` with it, and the check repeated inside the transaction so two processes
opening the same file at once never run a version twice.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Sequence

__all__ = ["apply_migrations"]


def apply_migrations(db: sqlite3.Connection, migrations: Sequence[tuple[int, str, str]]) -> None:
    """Apply each migration ``db`` has not recorded (``db`` in autocommit mode, ``isolation_level=None``)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
               "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    done = {r[0] for r in db.execute("SELECT id FROM schema_migrations")}
    for mid, name, sql in migrations:
        if mid in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM schema_migrations WHERE id = ?", (mid,)).fetchone() is None:
                code = "\n".join(ln.split("--", 1)[0] for ln in sql.splitlines())
                for stmt in code.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                           (mid, name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
