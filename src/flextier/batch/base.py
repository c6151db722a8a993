"""Old import path of the batch backend interface, kept working: it lives in
:mod:`flextier.providers.batch_base`, below the provider packages that implement it (so
``providers`` never imports ``batch``, the lane above them)."""
from __future__ import annotations

from ..providers.batch_base import (STATES, TERMINAL, BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult,
                                    retryable_status, wire_id)

__all__ = ["BatchItem", "BatchHandle", "BatchStatus", "ItemResult", "BatchBackend", "STATES", "TERMINAL",
           "wire_id", "retryable_status"]
