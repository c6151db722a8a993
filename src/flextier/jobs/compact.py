"""How the job store keeps request and result lines small on disk (issue 19: 2.9 KB per item).

Why: the store keeps every item's request (to send it, on any run) and its whole output line
(so a resume can rebuild the results file, see ``jobs/output.py``). Stored as text that was
2.9 KB per item, 1.5-3x the results file itself: 2.8 GB for a million items. Lines of one job
repeat the same JSON skeleton (keys, ids, tier and usage fields), so each is deflated on its own
with a preset dictionary of that skeleton (zlib ``zdict``): a typical output line shrinks 3-5x,
and every row still decodes alone (no cross-row state, so a crash mid-write loses nothing).

The stored value is a BLOB ``b"\\x01" + deflate(text, zdict=DICTS[1])``; a TEXT value is a row
written before this (or one too short to gain), returned as is. The dictionary of a version
byte never changes: stores hold data compressed with it. A new dictionary takes a new byte.
Nothing here runs SQL (that is ``jobs/store.py``).
"""
from __future__ import annotations

import zlib
from typing import Any

__all__ = ["pack", "unpack", "MIN_PACK"]

#: Shorter texts are stored as they are (deflate would not gain on them).
MIN_PACK = 64

# Version 1 dictionary: the skeleton of output lines (OpenAI batch output shape + flextier's
# object, for the four dialects) and of request lines. zlib prefers matches near the end of
# the dictionary, so the commonest strings come last.
_D1 = (
    '{"role":"user","content":"'
    '"generationConfig":{"maxOutputTokens":"inferenceConfig":{"maxTokens":"candidates":[{"content":{"parts":'
    '[{"text":"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":'
    '"candidatesTokenCount":"totalTokenCount":"thoughtsTokenCount":"modelVersion":"responseId":"serviceTier":'
    '"output":{"message":{"role":"assistant","content":[{"text":"}]}},"stopReason":"end_turn","usage":'
    '{"inputTokens":"outputTokens":"totalTokens":"type":"message","stop_reason":"end_turn","input_tokens":'
    '"output_tokens":"cache_read_input_tokens":0,"cache_creation_input_tokens":0,'
    '"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text",'
    '"text":"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0},'
    '{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{"model":"","messages":'
    '[{"role":"system","content":"},{"role":"user","content":"max_completion_tokens":"temperature":'
    '{"id":"","prompt":"","max_tokens":"params":{'
    '"error":{"message":"","type":"server_error","code":"'
    '{"id":"flextier_req_","custom_id":"","response":{"status_code":200,"request_id":"req_","body":'
    '{"id":"chatcmpl-","object":"chat.completion","created":17,"model":"gpt-","service_tier":"flex",'
    '"system_fingerprint":null,"choices":[{"index":0,"message":{"role":"assistant","content":"'
    '","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":'
    '{"prompt_tokens":,"completion_tokens":,"total_tokens":,"prompt_tokens_details":{"cached_tokens":0,'
    '"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":,"audio_tokens":0,'
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"error":null,'
    '"flextier":{"tier":"flex","attempts":1,"cost":"0.0","standard_cost":"0.0","possibly_billed":false}}'
).encode()

DICTS: dict[int, bytes] = {1: _D1}
_CURRENT = 1


def pack(text: str) -> Any:
    """The value to store for ``text``: a versioned deflate BLOB, or the text when that is not smaller."""
    raw = text.encode()
    if len(raw) < MIN_PACK:
        return text
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTS[_CURRENT])
    blob = bytes([_CURRENT]) + c.compress(raw) + c.flush()
    return blob if len(blob) < len(raw) else text


def unpack(value: Any) -> Any:
    """The text of a stored value (TEXT rows and NULL come back unchanged)."""
    if not isinstance(value, (bytes, memoryview)):
        return value
    b = bytes(value)
    d = zlib.decompressobj(-15, DICTS[b[0]])
    return (d.decompress(b[1:]) + d.flush()).decode()
