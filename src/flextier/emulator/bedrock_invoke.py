"""Bedrock ``InvokeModel``, ``InvokeModelWithResponseStream`` and ``CountTokens``.

Per botocore's bedrock-runtime model (1.43.11 carries ``serviceTier`` on both invoke
operations): the tier travels in the ``X-Amzn-Bedrock-Service-Tier`` request header
(``priority|default|flex|reserved``, omitted = default) and comes back in the same
response header; the body is the model's own JSON, so each family the catalog
lists keeps its native shape:

* Amazon Nova — ``messages-v1``: ``{"messages", "system", "inferenceConfig": {"maxTokens"}}``
  → ``{"output": {"message"}, "stopReason", "usage": {"inputTokens", ...}}``;
  stream events ``messageStart`` / ``contentBlockDelta`` / ... / ``metadata``.
* Anthropic Claude — the Messages body with ``anthropic_version: bedrock-2023-05-31``
  → a Messages response; stream events are the Messages SSE events' JSON.
* DeepSeek, Qwen (and other OpenAI-compatible models) — ``{"messages", "max_tokens"}``
  → a ``chat.completion``; a ``{"prompt", "max_tokens"}`` body → ``{"choices": [{"text",
  "stop_reason"}]}`` (the DeepSeek text-completion shape).

The stream is AWS event-stream framing: one ``chunk`` event per model event, its
payload ``{"bytes": base64(model JSON)}``; the last one carries
``amazon-bedrock-invocationMetrics``. Everything else — admission, flex queueing and
shedding, faults, pricing by the served tier, the ledger — is the Converse path's.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..catalog import ModelEntry
from .bedrock_api import BedrockAPI
from .engine import GenRequest, Session
from .errors_shape import aws_error
from .eventstream import event_frame
from .http import BadJSON, dumps, json_response, read_json
from .tokenizer import count_tokens, prompt_overhead
from .wire import Call, WireError

__all__ = ["BedrockInvokeAPI", "family", "TIER_HEADER"]

TIER_HEADER = "x-amzn-bedrock-service-tier"
_TIERS = {"default": "standard", "flex": "flex", "priority": "priority", "reserved": "reserved"}


def family(model_id: str, body: dict[str, Any]) -> str:
    """nova | anthropic | chat (OpenAI-compatible messages) | prompt (text completion)."""
    mid = model_id.lower()
    if ".nova" in mid or mid.startswith("nova") or "amazon.nova" in mid:
        return "nova"
    if "anthropic." in mid or mid.startswith("claude"):
        return "anthropic"
    return "prompt" if "prompt" in body and "messages" not in body else "chat"


def _texts(blocks: Any) -> list[str]:
    out: list[str] = []
    if isinstance(blocks, str):
        return [blocks]
    if isinstance(blocks, list):
        for b in blocks:
            if isinstance(b, str):
                out.append(b)
            elif isinstance(b, dict) and isinstance(b.get("text"), str):
                out.append(b["text"])
    return out


def _has_marker(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "cachePoint" in obj or "cache_control" in obj or any(_has_marker(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_marker(v) for v in obj)
    return False


def prompt_of(fam: str, body: dict[str, Any]) -> tuple[str, Any, str | None]:
    """(prompt text, max tokens, error message or None) for a model-native body."""
    parts: list[str] = []
    if fam == "prompt":
        p = body.get("prompt")
        if not isinstance(p, str) or not p:
            return "", None, "Malformed input request: #: required key [prompt] not found, please reformat " \
                             "your input and try again."
        return p, body.get("max_tokens"), None
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "", None, "Malformed input request: #: required key [messages] not found, please reformat your " \
                         "input and try again."
    sysval = body.get("system")
    parts += _texts(sysval)
    for m in msgs:
        if isinstance(m, dict):
            parts += _texts(m.get("content"))
    if fam == "nova":
        ic = body.get("inferenceConfig") or {}
        mt = ic.get("maxTokens", ic.get("max_new_tokens")) if isinstance(ic, dict) else None
    elif fam == "anthropic":
        if body.get("anthropic_version") is None:
            return "", None, "Malformed input request: #: required key [anthropic_version] not found, please " \
                             "reformat your input and try again."
        mt = body.get("max_tokens")
        if mt is None:
            return "", None, "Malformed input request: #: required key [max_tokens] not found, please reformat " \
                             "your input and try again."
    else:
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
    return "\n".join(parts), mt, None


_DIALECT = {"anthropic": "anthropic", "nova": "bedrock", "chat": "tools"}


def native_overhead(fam: str, body: dict[str, Any]) -> int:
    """Documented framing/tool tokens of a model-native body (see :func:`.tokenizer.prompt_overhead`):
    Claude's as on Anthropic, Nova's ``toolConfig`` as in Converse, other models' ``tools`` JSON."""
    dialect = _DIALECT.get(fam)
    return prompt_overhead(dialect, body) if dialect else 0


def _b64_event(obj: dict[str, Any]) -> bytes:
    return event_frame("chunk", dumps({"bytes": base64.b64encode(dumps(obj)).decode("ascii")}))


class BedrockInvokeAPI(BedrockAPI):
    """InvokeModel(+Stream) and CountTokens; errors as Converse renders them."""

    def routes(self) -> list[BaseRoute]:
        return [Route("/model/{model_id:path}/invoke", self.invoke, methods=["POST"]),
                Route("/model/{model_id:path}/invoke-with-response-stream", self.invoke_stream, methods=["POST"]),
                Route("/model/{model_id:path}/count-tokens", self.count, methods=["POST"])]

    def overhead(self, body: dict[str, Any]) -> int:
        return 0          # added per family in _build_invoke

    async def invoke(self, request: Request) -> Any:
        mid = request.path_params["model_id"]
        return await self.run(request, lambda b, r: self._build_invoke(b, r, mid, False))

    async def invoke_stream(self, request: Request) -> Any:
        mid = request.path_params["model_id"]
        return await self.run(request, lambda b, r: self._build_invoke(b, r, mid, True))

    # -- InvokeModel ---------------------------------------------------------------------------------
    def _tier(self, request: Request, model: str, entry: ModelEntry) -> tuple[str, str]:
        raw = request.headers.get(TIER_HEADER) or "default"
        tier = _TIERS.get(raw)
        if tier is None:
            raise WireError(aws_error(400, "ValidationException", f"1 validation error detected: Value '{raw}' "
                                      "at 'serviceTier' failed to satisfy constraint: Member must satisfy enum "
                                      "value set: [priority, default, flex, reserved]"),
                            model_wire=model, entry=entry, tier=raw)
        if tier == "reserved" or not entry.supports(tier):
            raise WireError(aws_error(400, "ValidationException", f"The model {model} does not support the "
                                      f"'{raw}' service tier. Try again with a supported service tier."),
                            model_wire=model, entry=entry, tier=tier)
        return raw, tier

    def _build_invoke(self, body: dict[str, Any], request: Request, model: str, stream: bool) -> Call:
        entry = self.engine.catalog.find_wire("bedrock", model)
        if entry is None:
            raise WireError(aws_error(400, "ValidationException", "The provided model identifier is invalid."),
                            model_wire=model)
        raw, tier = self._tier(request, model, entry)
        fam = family(entry.model_id, body)
        text, mt, problem = prompt_of(fam, body)
        if problem:
            raise WireError(aws_error(400, "ValidationException", problem), model_wire=model, entry=entry, tier=tier)
        if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
            raise WireError(aws_error(400, "ValidationException", "Malformed input request: max tokens must be "
                                      ">= 1, please reformat your input and try again."),
                            model_wire=model, entry=entry, tier=tier)
        cache_ok = _has_marker(body) or not self.engine.knobs.cache_requires_marker
        req = GenRequest(provider="bedrock", model_wire=model, entry=entry, tier=tier, served_tier=tier,
                         prompt_text=text, max_tokens=mt, stream=stream, cache_eligible=cache_ok,
                         prompt_overhead=native_overhead(fam, body))
        clock = self.engine.clock
        renderers = _FAMILIES[fam]

        def metrics(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            lat = int((clock.now() - s.t0) * 1000)
            return {"inputTokenCount": p.input_tokens, "outputTokenCount": p.output_tokens,
                    "invocationLatency": lat, "firstByteLatency": lat}

        def render(s: Session) -> dict[str, Any]:
            return renderers[0](s, entry.model_id)

        async def stream_body(s: Session) -> AsyncIterator[bytes]:
            events = renderers[1]
            async for ev in events(s, entry.model_id, metrics):
                yield _b64_event(ev)

        def headers(s: Session) -> dict[str, str]:
            p = s.plan
            h = {"x-amzn-RequestId": f"{s.rid[:8]}-0000-4000-8000-{s.rid[-12:]:0>12}",
                 "X-Amzn-Bedrock-Service-Tier": raw}
            if stream:
                h["X-Amzn-Bedrock-Content-Type"] = "application/json"
            elif p is not None:
                h["X-Amzn-Bedrock-Input-Token-Count"] = str(p.input_tokens)
                h["X-Amzn-Bedrock-Output-Token-Count"] = str(p.output_tokens)
                h["X-Amzn-Bedrock-Invocation-Latency"] = str(int((clock.now() - s.t0) * 1000))
            return h

        return Call(req, render, stream_body, stream_media="application/vnd.amazon.eventstream", headers=headers)

    # -- CountTokens ----------------------------------------------------------------------------------
    async def count(self, request: Request) -> Response:
        """``{"input": {"converse": {...}} | {"invokeModel": {"body": base64}}}`` → ``{"inputTokens"}``:
        the count the same request would be billed as input (free, not in the ledger)."""
        mid = request.path_params["model_id"]
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return aws_error(400, "ValidationException", str(exc))
        entry = self.engine.catalog.find_wire("bedrock", mid)
        if entry is None:
            return aws_error(400, "ValidationException", "The provided model identifier is invalid.")
        inp = body.get("input")
        if not isinstance(inp, dict) or len(inp) != 1 or not ({"converse", "invokeModel"} & set(inp)):
            return aws_error(400, "ValidationException", "1 validation error detected: Value at 'input' failed to "
                             "satisfy constraint: exactly one of [converse, invokeModel] must be set")
        if "converse" in inp:
            conv = inp["converse"] if isinstance(inp["converse"], dict) else {}
            try:
                call = BedrockAPI._build(self, dict(conv), mid, False)
            except WireError as exc:
                return exc.response
            n = count_tokens(call.req.prompt_prefix) + count_tokens(call.req.prompt_text) + prompt_overhead("bedrock", conv)
            return json_response({"inputTokens": n})
        blob = inp["invokeModel"].get("body") if isinstance(inp["invokeModel"], dict) else None
        try:
            native = json.loads(base64.b64decode(blob, validate=True)) if isinstance(blob, str) else None
        except (binascii.Error, ValueError):
            native = None
        if not isinstance(native, dict):
            return aws_error(400, "ValidationException", "The input body must be a base64-encoded JSON object.")
        fam = family(entry.model_id, native)
        text, _, problem = prompt_of(fam, native)
        if problem:
            return aws_error(400, "ValidationException", problem)
        return json_response({"inputTokens": count_tokens(text) + native_overhead(fam, native)})


# -- per-family bodies ----------------------------------------------------------------------------------
Metrics = Callable[[Session], dict[str, Any]]


def _pieces_text(first: bool, words: list[str]) -> str:
    return ("" if first else " ") + " ".join(words)


def _nova_render(s: Session, model: str) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return {"output": {"message": {"role": "assistant", "content": [{"text": p.text}]}},
            "stopReason": "max_tokens" if p.finish == "length" else "end_turn",
            "usage": {"inputTokens": p.input_tokens - p.cached_tokens, "outputTokens": p.output_tokens,
                      "totalTokens": p.input_tokens + p.output_tokens,
                      "cacheReadInputTokenCount": p.cached_tokens, "cacheWriteInputTokenCount": 0}}


async def _nova_stream(s: Session, model: str, metrics: Metrics) -> AsyncIterator[dict[str, Any]]:
    yield {"messageStart": {"role": "assistant"}}
    first = True
    async for words in s.pieces(8):
        yield {"contentBlockDelta": {"delta": {"text": _pieces_text(first, words)}, "contentBlockIndex": 0}}
        first = False
    p = s.plan
    assert p is not None
    yield {"contentBlockStop": {"contentBlockIndex": 0}}
    yield {"messageStop": {"stopReason": "max_tokens" if p.finish == "length" else "end_turn"}}
    yield {"metadata": {"usage": {"inputTokens": p.input_tokens - p.cached_tokens, "outputTokens": p.output_tokens,
                                  "cacheReadInputTokenCount": p.cached_tokens, "cacheWriteInputTokenCount": 0},
                        "metrics": {}, "trace": {}},
           "amazon-bedrock-invocationMetrics": metrics(s)}


def _anthropic_usage(s: Session, output: int | None = None) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return {"input_tokens": p.input_tokens - p.cached_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": p.cached_tokens, "output_tokens": p.output_tokens if output is None else output}


def _anthropic_message(s: Session, model: str, content: list[dict[str, Any]], stop: str | None,
                       usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"msg_bdrk_{s.rid}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": usage}


def _anthropic_render(s: Session, model: str) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return _anthropic_message(s, model, [{"type": "text", "text": p.text}],
                              "max_tokens" if p.finish == "length" else "end_turn", _anthropic_usage(s))


async def _anthropic_stream(s: Session, model: str, metrics: Metrics) -> AsyncIterator[dict[str, Any]]:
    yield {"type": "message_start", "message": _anthropic_message(s, model, [], None, _anthropic_usage(s, 1))}
    yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    first = True
    async for words in s.pieces(8):
        yield {"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": _pieces_text(first, words)}}
        first = False
    p = s.plan
    assert p is not None
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "message_delta", "delta": {"stop_reason": "max_tokens" if p.finish == "length" else "end_turn",
                                              "stop_sequence": None}, "usage": {"output_tokens": p.output_tokens}}
    yield {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics(s)}


def _chat_usage(s: Session) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return {"prompt_tokens": p.input_tokens, "completion_tokens": p.output_tokens,
            "total_tokens": p.input_tokens + p.output_tokens}


def _chat_render(s: Session, model: str) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return {"id": f"chatcmpl-{s.rid}", "object": "chat.completion", "created": int(s.t0), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": p.text},
                         "finish_reason": p.finish}], "usage": _chat_usage(s)}


async def _chat_stream(s: Session, model: str, metrics: Metrics) -> AsyncIterator[dict[str, Any]]:
    base = {"id": f"chatcmpl-{s.rid}", "object": "chat.completion.chunk", "created": int(s.t0), "model": model}
    first = True
    async for words in s.pieces(8):
        delta: dict[str, Any] = {"content": _pieces_text(first, words)}
        if first:
            delta["role"] = "assistant"
        first = False
        yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    p = s.plan
    assert p is not None
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": p.finish}], "usage": _chat_usage(s),
           "amazon-bedrock-invocationMetrics": metrics(s)}


def _prompt_render(s: Session, model: str) -> dict[str, Any]:
    p = s.plan
    assert p is not None
    return {"choices": [{"text": p.text, "stop_reason": p.finish}]}


async def _prompt_stream(s: Session, model: str, metrics: Metrics) -> AsyncIterator[dict[str, Any]]:
    first = True
    async for words in s.pieces(8):
        yield {"choices": [{"text": _pieces_text(first, words), "stop_reason": None}]}
        first = False
    p = s.plan
    assert p is not None
    yield {"choices": [{"text": "", "stop_reason": p.finish}], "amazon-bedrock-invocationMetrics": metrics(s)}


_FAMILIES: dict[str, tuple[Callable[..., dict[str, Any]], Callable[..., AsyncIterator[dict[str, Any]]]]] = {
    "nova": (_nova_render, _nova_stream), "anthropic": (_anthropic_render, _anthropic_stream),
    "chat": (_chat_render, _chat_stream), "prompt": (_prompt_render, _prompt_stream)}
