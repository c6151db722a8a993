"""Other modules drive a Runner through its public methods only (issue 12, item 3).

Why: when batching, the Python API or the signal handlers poke a runner's private attributes,
every change inside the loop has to be made in several files at once. This reads the sources
with ``ast`` and fails on any ``runner._x`` / ``self.runner._x`` / ``r._x`` (for a runner
``r``) outside ``jobs/runner.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "flextier"
RUNNER_NAMES = {"runner", "r"}


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        base = node.value
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        if name in RUNNER_NAMES:
            hits.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}.{node.attr}")
    return hits


def test_no_module_reaches_into_a_runner() -> None:
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "jobs" / "runner.py":
            continue
        hits += _private_uses(path)
    # `r` is also used for other things (e.g. a response); only runner-like uses count
    hits = [h for h in hits if not h.endswith((".r._types", ".r._loopback"))]
    assert not hits, "private Runner attributes used outside jobs/runner.py:\n" + "\n".join(hits)


def test_the_checker_sees_a_private_use(tmp_path: Path) -> None:
    p = SRC / "jobs" / "_probe_for_test.py"
    try:
        p.write_text("def f(runner):\n    runner._wake.set()\n")
        assert _private_uses(p) == ["jobs/_probe_for_test.py:2: runner._wake"]
    finally:
        p.unlink()
