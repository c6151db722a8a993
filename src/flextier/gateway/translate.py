"""An OpenAI Chat request for a ``provider/model`` from the catalog, through that provider's adapter.

Why: an OpenAI client can then reach Gemini or Bedrock (``model="gemini/gemini-3-flash"``,
``"bedrock/nova-pro"``) without a second SDK. The request's messages and common parameters
become a provider-neutral :class:`~flextier._types.CallRequest`; the provider's adapter
(``providers/<p>/``) makes each attempt and :func:`flextier.policy.fallback.acall_with_policy`
(the one retry loop) decides, exactly as ``flextier.acomplete`` does. The answer comes back
as an OpenAI ``chat.completion`` (or, for ``stream: true``, a short SSE stream of the finished
answer: the adapters make whole calls, so such a stream is not token by token; usage rides in
the last chunk only when ``stream_options.include_usage`` asked for it).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .._types import CallRequest, CallResult
from ..catalog import ModelEntry

__all__ = ["call_request", "chat_completion", "chat_chunks", "PARAMS"]

#: OpenAI Chat parameters the adapters translate (``max_completion_tokens`` is read as max_tokens)
PARAMS = ("max_tokens", "temperature", "top_p", "stop")


def call_request(entry: ModelEntry, body: dict[str, Any]) -> CallRequest:
    params = {k: body[k] for k in PARAMS if body.get(k) is not None}
    if body.get("max_completion_tokens") is not None:
        params["max_tokens"] = body["max_completion_tokens"]
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages must be a non-empty list")
    return CallRequest(model=entry, messages=msgs, params=params)


def _usage(r: CallResult) -> dict[str, Any]:
    u = r.usage
    if u is None:
        return {}
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def _tier(r: CallResult) -> str:
    return "default" if r.tier == "standard" else r.tier


def chat_completion(r: CallResult, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-ft{uuid.uuid4().hex[:20]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "service_tier": _tier(r),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": r.text, "refusal": None}}],
            "usage": _usage(r)}


def chat_chunks(r: CallResult, model: str, include_usage: bool) -> list[bytes]:
    cid = f"chatcmpl-ft{uuid.uuid4().hex[:20]}"
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "service_tier": _tier(r)}

    def ev(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    out = [ev({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": r.text},
                                    "finish_reason": None}]}),
           ev({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]
    if include_usage:
        out.append(ev({**base, "choices": [], "usage": _usage(r)}))
    out.append(b"data: [DONE]\n\n")
    return out
