"""A deterministic stand-in tokenizer and text generator.

Real tokenizers are model-specific and would need vocab files; the emulator only
needs counts that are stable, monotone in text length and identical between what
it reports and what it generated. One token = one word or one punctuation mark.
Generated text is words from a fixed vocabulary, so re-tokenizing it gives back
exactly the count that was reported.
"""
from __future__ import annotations

import hashlib
import random
import re

_blake2b = hashlib.blake2b

__all__ = ["tokenize", "count_tokens", "generate_words", "request_rng"]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_VOCAB = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no will can more other "
    "time could these two may first then do any like my now over such our man me even most made after "
    "also did many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three flex tier batch deadline capacity token model queue cost"
).split()


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN_RE.finditer(text))


def request_rng(*parts: object) -> random.Random:
    """An RNG seeded from a stable digest of ``parts`` (seed, provider, model, prompt...)."""
    # one update of repr(p1) + US + repr(p2) + US ...: the same bytes (so the same seed) as
    # updating part by part, in one call
    data = "".join([repr(p) + "\x1f" for p in parts]).encode("utf-8", "surrogatepass")
    return random.Random(int.from_bytes(_blake2b(data, digest_size=16).digest(), "big"))


_VOCAB128 = (_VOCAB * 2)[:128]    # a power of two: one random byte picks one word without bias


def generate_words(rng: random.Random, n: int) -> list[str]:
    """``n`` vocabulary words (each one token); the first capitalised, no punctuation tokens."""
    v = _VOCAB128
    words = [v[b & 127] for b in rng.randbytes(n)]
    if words:
        words[0] = words[0].capitalize()
    return words
