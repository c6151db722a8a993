"""Ctrl-C while the CLI is still starting: one line, exit 130, no traceback.

Why: from process start to the first request takes ~0.4 s (README "Start-up"), nearly all of
it imports; a Ctrl-C there used to print a KeyboardInterrupt traceback from whichever module
was importing. Nothing has been sent or stored yet, so there is nothing to drain: leave at
once. :func:`flextier.cli.main` puts Python's own handler back as it starts, from where a
Ctrl-C is a KeyboardInterrupt (``main`` prints one line and returns 130) and, once the job's
loop runs, a graceful stop (:mod:`flextier.jobs.signals`).

Installed by ``flextier/__init__.py`` as its first step, and only when this process *is* the
CLI (the ``flextier`` console script or ``python -m flextier...``, read from
``sys.orig_argv``): a program that imports flextier as a library keeps its own SIGINT.
What is left is the interpreter's own start (site and its ``.pth`` files), before any
flextier code runs.
"""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["install_if_cli", "restore", "early_interrupt"]


def early_interrupt(signum: int, frame: object) -> None:
    """The start-up SIGINT handler: one line on stderr, exit 130 (128 + SIGINT, as a shell reports)."""
    try:
        os.write(2, b"flextier: interrupted\n")
    finally:
        os._exit(130)


def _is_cli(argv: list[str]) -> bool:
    """``[python, [opts], .../flextier, ...]`` or ``[python, [opts], -m, flextier[.x], ...]``."""
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-X", "-W"):  # options that take the next word
            i += 2
            continue
        if a == "-m":
            mod = argv[i + 1] if i + 1 < len(argv) else ""
            return mod == "flextier" or mod.startswith("flextier.")
        if a == "-c" or a == "-":
            return False
        if not a.startswith("-"):  # the script
            return os.path.basename(a) in ("flextier", "flextier.exe", "flextier-script.py")
        i += 1
    return False


def install_if_cli() -> None:
    """Install :func:`early_interrupt` for SIGINT when this process is the flextier CLI's main thread."""
    if not _is_cli(list(getattr(sys, "orig_argv", sys.argv))):
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, early_interrupt)
    except ValueError:  # pragma: no cover - not the main thread
        pass


def restore() -> None:
    """Python's KeyboardInterrupt handler again (the CLI's ``main`` catches it from here on)."""
    try:
        if signal.getsignal(signal.SIGINT) is early_interrupt:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # pragma: no cover - not the main thread
        pass
