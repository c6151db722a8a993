"""Old import path of the Gemini batch backend, kept working: it lives in
:mod:`flextier.providers.gemini.batch`, with the rest of the Gemini dialect."""
from __future__ import annotations

from ..providers.gemini.batch import GeminiBatch

__all__ = ["GeminiBatch"]
