"""Old import path of the OpenAI batch backend, kept working: it lives in
:mod:`flextier.providers.openai.batch`, with the rest of the OpenAI dialect."""
from __future__ import annotations

from ..providers.openai.batch import META_KEY, OpenAIBatch

__all__ = ["OpenAIBatch", "META_KEY"]
