"""Only the job store runs SQL (issue 12 item 4): every query lives in jobs/store.py (the tables in
jobs/schema.py, which the store applies).

An AST walk over src/flextier: a call of ``.execute(``, ``.executemany(`` or ``.executescript(`` (the
sqlite3 connection and cursor methods), or ``sqlite3.connect(``, anywhere but jobs/store.py fails
this test. A new feature that needs data from the job database adds a named JobStore method instead.
"""
from __future__ import annotations

import ast
from pathlib import Path

import flextier

SRC = Path(flextier.__file__).resolve().parent
STORE = SRC / "jobs" / "store.py"
SQL_METHODS = {"execute", "executemany", "executescript"}
# The emulator is the providers' side of the wire: it has no job database (its ledger is in memory).
EXEMPT_DIRS = (SRC / "emulator",)
# No module besides the store needs SQL on the job database. Add "path relative to src/flextier" entries
# here only with a comment saying why a store method cannot do.
ALLOWED: set[str] = {
    # the per-user history (issue 17) is another database, shared by every job, wrap and the gateway and
    # outliving each job store; history/db.py is its one SQL home (docs/history.md §1)
    "history/db.py",
    # the gateway's call ledger is its own database (not a job's); gateway/ledger.py is its one SQL home
    "gateway/ledger.py",
    # the one migration runner every flextier database uses (it runs each schema's own SQL)
    "_migrate.py",
}


def _sql_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        f = node.func
        if f.attr in SQL_METHODS or (f.attr == "connect" and isinstance(f.value, ast.Name)
                                     and f.value.id == "sqlite3"):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}: .{f.attr}(")
    return found


def test_the_walk_sees_the_stores_own_sql():
    """The check is live: it finds the calls the store itself makes (else it could never fail)."""
    calls = _sql_calls(STORE)
    assert any(".executemany(" in c for c in calls) and any(".connect(" in c for c in calls)


def test_only_the_store_runs_sql():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == STORE or any(d in path.parents for d in EXEMPT_DIRS):
            continue
        if str(path.relative_to(SRC)) in ALLOWED:
            continue
        offenders += _sql_calls(path)
    assert offenders == [], "SQL outside jobs/store.py (add a named JobStore method):\n" + "\n".join(offenders)
