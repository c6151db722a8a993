"""Provider adapters: one attempt at one tier through the official SDK, errors classified.

See :mod:`flextier.providers.base` for the contract. Provider modules load on first use,
so ``import flextier.providers`` does not import every SDK.
"""
from __future__ import annotations

from .base import Adapter, BaseAdapter, adapter_class, clear_adapter_cache, get_adapter

__all__ = ["Adapter", "BaseAdapter", "get_adapter", "adapter_class", "clear_adapter_cache"]
