"""Well-formed token log-probabilities for OpenAI's ``logprobs``/``top_logprobs``.

The values mean nothing (the emulated model has no distribution) but have the real
shape and invariants: the tokens concatenate to the text, every logprob is <= 0,
``top_logprobs`` has the requested length, is sorted descending and starts with the
chosen token. Seeded from the text, so the same answer has the same logprobs.
"""
from __future__ import annotations

import re
from typing import Any

from .tokenizer import request_rng

__all__ = ["token_logprobs"]

_TOK = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_ALT = (" the", " of", " and", " a", " to", ",", ".", " in", " is", " flex", " tier", " model")


def token_logprobs(text: str, top: int, seed: int = 0) -> list[dict[str, Any]]:
    """One entry per token of ``text``: ``{"token", "logprob", "bytes", "top_logprobs"}``."""
    rng = request_rng("logprobs", seed, text)
    out: list[dict[str, Any]] = []
    top = max(0, min(int(top), 20))
    for m in _TOK.finditer(text):
        tok = m.group()
        lp = round(-abs(rng.gauss(0.0, 0.8)), 6)
        tops: list[dict[str, Any]] = []
        if top:
            tops.append({"token": tok, "logprob": lp, "bytes": list(tok.encode())})
            alts = [a for a in _ALT if a != tok]
            last = lp
            for a in alts[:top - 1]:
                last = round(last - 0.1 - rng.random() * 2.0, 6)
                tops.append({"token": a, "logprob": last, "bytes": list(a.encode())})
        out.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": tops})
    return out
