"""Old import path of the Bedrock batch backend, kept working: it lives in
:mod:`flextier.providers.bedrock.batch`, with the rest of the Bedrock dialect."""
from __future__ import annotations

from ..providers.bedrock.batch import *  # noqa: F401,F403
from ..providers.bedrock.batch import BedrockBatch, MIN_RECORDS  # noqa: F401

__all__ = ["BedrockBatch", "MIN_RECORDS"]
