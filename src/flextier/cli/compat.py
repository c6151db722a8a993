"""Click exception classes, wherever this Typer version keeps them.

Typer >= 0.25 vendors click as ``typer._click``; older versions use ``click``.
The CLI catches these to turn usage errors into one line and exit code 2.
"""
from __future__ import annotations

_mods = []
try:  # Typer with vendored click
    from typer._click import exceptions as _tc  # type: ignore[import-not-found]
    _mods.append(_tc)
except ImportError:  # pragma: no cover
    pass
try:
    from click import exceptions as _cc
    _mods.append(_cc)
except ImportError:  # pragma: no cover
    pass


try:
    from typer import exceptions as _te  # type: ignore[attr-defined]
    _mods.append(_te)
except ImportError:  # pragma: no cover
    pass


def _collect(name: str) -> tuple[type[BaseException], ...]:
    return tuple({getattr(m, name) for m in _mods if isinstance(getattr(m, name, None), type)})


UsageError = _collect("UsageError")
NoArgsIsHelpError = _collect("NoArgsIsHelpError") or (type("_Never", (Exception,), {}),)
Exit = _collect("Exit") or (type("_NeverExit", (Exception,), {}),)
Abort = _collect("Abort") or (type("_NeverAbort", (Exception,), {}),)
