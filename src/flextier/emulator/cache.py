"""Prompt-prefix cache: which leading part of a prompt the provider has seen recently.

Providers cache prompt prefixes of at least 1,024 tokens and report the hit as
cached tokens (billed at the cached rate). The emulator keeps, per provider/model,
an LRU of hashes of prompt prefixes at block boundaries (1024, 1152, ...); the
longest boundary whose hash is present is the cached length.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

__all__ = ["PrefixCache"]


class PrefixCache:
    def __init__(self, min_tokens: int = 1024, block_tokens: int = 128, lru_size: int = 4096) -> None:
        self.min_tokens = min_tokens
        self.block_tokens = max(1, block_tokens)
        self.lru_size = lru_size
        self._lru: dict[str, OrderedDict[bytes, None]] = {}

    def _boundary_hashes(self, tokens: list[str]) -> list[tuple[int, bytes]]:
        n = len(tokens)
        if n < self.min_tokens or self.min_tokens <= 0:
            return []
        out: list[tuple[int, bytes]] = []
        h = hashlib.blake2b(digest_size=16)
        pos = 0
        cut = self.min_tokens
        while cut <= n:
            h.update("\x00".join(tokens[pos:cut]).encode("utf-8", "surrogatepass"))
            h.update(b"\x01")
            out.append((cut, h.copy().digest()))
            pos, cut = cut, cut + self.block_tokens
        return out

    def lookup_and_store(self, key: str, tokens: list[str]) -> int:
        """Cached token count for this prompt; then remember all of its prefixes."""
        bounds = self._boundary_hashes(tokens)
        if not bounds:
            return 0
        lru = self._lru.setdefault(key, OrderedDict())
        cached = 0
        for length, digest in bounds:
            if digest in lru:
                cached = length
                lru.move_to_end(digest)
            lru[digest] = None
        while len(lru) > self.lru_size:
            lru.popitem(last=False)
        return cached
