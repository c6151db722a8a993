"""The reference tokenizer for token-count expectations: OpenAI's o200k_base BPE from
``bpe-openai`` (its public, tiktoken-compatible API), independent of how the emulator
calls it. Prompt-cache expectations follow the providers' rule: the longest shared
prefix, in blocks of 128 tokens past the 1,024-token minimum."""
from __future__ import annotations

import bpe_openai

_ENC = bpe_openai.get_encoding("o200k_base")


def o200k(text: str) -> int:
    return len(_ENC.encode(text))


def ids(text: str) -> list[int]:
    return _ENC.encode(text)


def cached_len(shared: int, minimum: int = 1024, block: int = 128) -> int:
    """Tokens a repeat of a prompt reads from cache when ``shared`` leading tokens match."""
    return 0 if shared < minimum else minimum + (shared - minimum) // block * block


def shared_prefix(a: str, b: str) -> int:
    x, y = ids(a), ids(b)
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    return n
