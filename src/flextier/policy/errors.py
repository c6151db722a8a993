"""Compatibility home of the exception hierarchy: it now lives in :mod:`flextier.errors`.

Why the move: ``flextier.errors`` is the documented import path, and it imports nothing from
flextier, so any module (the catalog, the store, the emulator) may import it without a cycle.
This module re-exports it so ``from flextier.policy.errors import X`` keeps working.
"""
from ..errors import *  # noqa: F401,F403
from ..errors import __all__  # noqa: F401
