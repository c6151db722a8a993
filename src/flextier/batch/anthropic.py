"""Old import path of the Anthropic batch backend, kept working: it lives in
:mod:`flextier.providers.anthropic.batch`, with the rest of the Anthropic dialect."""
from __future__ import annotations

from ..providers.anthropic.batch import AnthropicBatch

__all__ = ["AnthropicBatch"]
