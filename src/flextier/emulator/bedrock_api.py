"""Bedrock runtime dialect: ``/model/{modelId}/converse`` and ``/converse-stream``.

Per docs/providers.md and botocore's bedrock-runtime model: the tier is the object
``serviceTier: {"type": "flex"}`` and is echoed back (body, stream ``metadata``);
errors travel as ``x-amzn-ErrorType`` + ``{"message": ...}`` — ThrottlingException
(429) or ServiceUnavailableException (503) for shed flex, ValidationException
(400) for a tier the model lacks. SigV4 headers are accepted and ignored.
``inputTokens`` excludes cache reads, reported in ``cacheReadInputTokens``.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import json

from .engine import EmuError, GenRequest, Session, text_chunks
from .eventstream import event_frame, exception_frame
from .http import dumps, json_response
from .openai_tools import stop_list, tools_prompt
from .tools import OutputSpec, ToolSpec
from .wire import Call, WireAPI, WireError

__all__ = ["BedrockAPI"]

_TIERS = {"default": "standard", "flex": "flex", "priority": "priority", "reserved": "reserved"}


def _err(status: int, error_type: str, message: str) -> Response:
    return json_response({"message": message}, status,
                         {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                          "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"})


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}


def _spec(body: dict[str, Any], msgs: list[Any]) -> OutputSpec | None:
    """``toolConfig`` (tools, ``toolChoice``) and ``outputConfig.textFormat`` as an OutputSpec."""
    tc = body.get("toolConfig") if isinstance(body.get("toolConfig"), dict) else {}
    tools = []
    for t in tc.get("tools") or []:
        ts = t.get("toolSpec") if isinstance(t, dict) else None
        if isinstance(ts, dict) and isinstance(ts.get("name"), str):
            js = ts.get("inputSchema")
            tools.append(ToolSpec.of(ts["name"], js.get("json") if isinstance(js, dict) else None))
    schema: Any = None
    oc = body.get("outputConfig")
    tf = oc.get("textFormat") if isinstance(oc, dict) else None
    if isinstance(tf, dict) and tf.get("type") == "json_schema":
        raw = ((tf.get("structure") or {}).get("jsonSchema") or {}).get("schema")
        try:
            schema = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            schema = None
        schema = schema if isinstance(schema, dict) else {"type": "object"}
    if not tools and schema is None:
        return None
    ch = tc.get("toolChoice") if isinstance(tc.get("toolChoice"), dict) else {}
    choice, forced = "auto", None
    if "any" in ch:
        choice = "any"
    elif isinstance(ch.get("tool"), dict):
        choice, forced = "tool", ch["tool"].get("name")
    called: set[str] = set()
    for m in msgs:
        if isinstance(m, dict) and m.get("role") == "assistant":
            for b in m.get("content") or []:
                tu = b.get("toolUse") if isinstance(b, dict) else None
                if isinstance(tu, dict) and isinstance(tu.get("name"), str):
                    called.add(tu["name"])
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    after = last.get("role") == "user" and any(isinstance(b, dict) and "toolResult" in b
                                               for b in last.get("content") or [])
    return OutputSpec(tools=tools, choice=choice, forced=forced, after_tool_result=after,
                      called=frozenset(called), json_schema=schema)


class BedrockAPI(WireAPI):
    provider = "bedrock"

    def routes(self) -> list[BaseRoute]:
        return [Route("/model/{model_id:path}/converse", self.converse, methods=["POST"]),
                Route("/model/{model_id:path}/converse-stream", self.converse_stream, methods=["POST"])]

    def bad_request(self, message: str) -> Response:
        return _err(400, "ValidationException", message)

    def auth_error(self) -> Response:
        return _err(403, "UnrecognizedClientException", "The security token included in the request is invalid.")

    def error_response(self, err: EmuError, req: GenRequest) -> Response:
        k = self.engine.knobs
        if err.kind in ("shed", "timeout", "preempted"):
            if err.kind == "shed" and err.u >= k.bedrock_503_fraction:
                return _err(429, "ThrottlingException", "Too many requests, please wait before trying again.")
            return _err(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        if err.kind == "rate_limit":
            r = _err(429, "ThrottlingException", "Too many tokens, please wait before trying again.")
            r.headers["retry-after"] = str(int(max(1, round(err.retry_after or 1))))
            return r
        if err.kind == "quota":
            return _err(400, "ServiceQuotaExceededException",
                        "Your request exceeded the service quota for your account.")
        if err.kind == "server_502":
            return Response(b"<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        if err.kind == "gone":
            return _err(499, "RequestCancelled", "Client closed request.")
        return _err(500, "InternalServerException", "The server encountered an internal error.")

    def stream_error(self, err: EmuError) -> bytes:
        if err.kind in ("preempted", "timeout"):
            return exception_frame("serviceUnavailableException",
                                   dumps({"message": "Bedrock is unable to process your request."}))
        return exception_frame("internalServerException", dumps({"message": err.message}))

    async def converse(self, request: Request) -> Any:
        mid = request.path_params["model_id"]
        return await self.run(request, lambda b, r: self._build(b, mid, False))

    async def converse_stream(self, request: Request) -> Any:
        mid = request.path_params["model_id"]
        return await self.run(request, lambda b, r: self._build(b, mid, True))

    def _build(self, body: dict[str, Any], model: str, stream: bool) -> Call:
        entry = self.engine.catalog.find_wire("bedrock", model)
        if entry is None:
            raise WireError(_err(400, "ValidationException", "The provided model identifier is invalid."),
                            model_wire=model)
        st = body.get("serviceTier")
        raw = "default"
        if st is not None:
            if not isinstance(st, dict) or not isinstance(st.get("type"), str):
                raise WireError(_err(400, "ValidationException", "1 validation error detected: Value at "
                                     "'serviceTier' failed to satisfy constraint: Member must not be null"),
                                model_wire=model, entry=entry)
            raw = st["type"]
        tier = _TIERS.get(raw)
        if tier is None:
            raise WireError(_err(400, "ValidationException", f"1 validation error detected: Value '{raw}' at "
                                 "'serviceTier.type' failed to satisfy constraint: Member must satisfy enum value "
                                 "set: [priority, default, flex, reserved]"), model_wire=model, entry=entry,
                            tier=raw)
        if tier == "reserved" or not entry.supports(tier):
            raise WireError(_err(400, "ValidationException", f"The model {model} does not support the "
                                 f"'{raw}' service tier. Try again with a supported service tier."),
                            model_wire=model, entry=entry, tier=tier)
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise WireError(_err(400, "ValidationException", "A conversation must start with a user message."),
                            model_wire=model, entry=entry, tier=tier)
        texts: list[str] = []
        marker = False
        blocks: list[Any] = list(body.get("system") or []) if isinstance(body.get("system"), list) else []
        for m in msgs:
            if isinstance(m, dict) and isinstance(m.get("content"), list):
                blocks.extend(m["content"])
        for b in blocks:
            if isinstance(b, dict):
                if isinstance(b.get("text"), str):
                    texts.append(b["text"])
                elif "toolUse" in b or "toolResult" in b:
                    texts.append(dumps(b).decode())
                if "cachePoint" in b:
                    marker = True
        ic = body.get("inferenceConfig") or {}
        mt = ic.get("maxTokens") if isinstance(ic, dict) else None
        if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
            raise WireError(_err(400, "ValidationException", "maxTokens must be >= 1"),
                            model_wire=model, entry=entry, tier=tier)
        cache_ok = marker or not self.engine.knobs.cache_requires_marker
        spec = _spec(body, msgs)
        if spec is not None and spec.unknown_forced() is not None:
            raise WireError(_err(400, "ValidationException", f"The tool {spec.forced} in toolChoice is not "
                                 "defined in toolConfig.tools."), model_wire=model, entry=entry, tier=tier)
        req = GenRequest(provider="bedrock", model_wire=model, entry=entry, tier=tier, served_tier=tier,
                         prompt_text="\n".join(texts), max_tokens=mt, stream=stream, cache_eligible=cache_ok,
                         output=spec, stop=stop_list(ic.get("stopSequences") if isinstance(ic, dict) else None),
                         prompt_prefix=tools_prompt(body.get("toolConfig"), body.get("outputConfig"))
                         if spec is not None else "")
        wire_tier = {"type": raw}

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"inputTokens": p.input_tokens - p.cached_tokens, "outputTokens": p.output_tokens,
                    "totalTokens": p.input_tokens + p.output_tokens, "cacheReadInputTokens": p.cached_tokens,
                    "cacheWriteInputTokens": 0}

        def stop(s: Session) -> str:
            return _STOP[s.plan.finish] if s.plan is not None else "end_turn"

        def content(s: Session) -> list[dict[str, Any]]:
            assert s.plan is not None
            if s.plan.tool_calls:
                return [{"toolUse": {"toolUseId": f"tooluse_{tc.id}", "name": tc.name, "input": tc.input}}
                        for tc in s.plan.tool_calls]
            return [{"text": s.plan.text}]

        def latency_ms(s: Session) -> int:
            return int((self.engine.clock.now() - s.t0) * 1000)

        def render(s: Session) -> dict[str, Any]:
            assert s.plan is not None
            return {"output": {"message": {"role": "assistant", "content": content(s)}},
                    "stopReason": stop(s), "usage": usage(s), "metrics": {"latencyMs": latency_ms(s)},
                    "serviceTier": wire_tier}

        async def stream_body(s: Session) -> AsyncIterator[bytes]:
            yield event_frame("messageStart", dumps({"role": "assistant"}))
            p = s.plan
            assert p is not None
            if p.tool_calls:
                for i, tc in enumerate(p.tool_calls):
                    yield event_frame("contentBlockStart", dumps({"contentBlockIndex": i, "start": {"toolUse": {
                        "toolUseId": f"tooluse_{tc.id}", "name": tc.name}}}))
                    js = tc.arguments_json
                    size = max(1, -(-len(js) // 6))
                    async for frag in s.paced([js[k:k + size] for k in range(0, len(js), size)]):
                        yield event_frame("contentBlockDelta", dumps({"contentBlockIndex": i,
                                                                      "delta": {"toolUse": {"input": frag}}}))
                    yield event_frame("contentBlockStop", dumps({"contentBlockIndex": i}))
            else:
                async for text in s.paced(text_chunks(p, 8) or [""]):
                    yield event_frame("contentBlockDelta", dumps({"contentBlockIndex": 0, "delta": {"text": text}}))
                yield event_frame("contentBlockStop", dumps({"contentBlockIndex": 0}))
            yield event_frame("messageStop", dumps({"stopReason": stop(s)}))
            yield event_frame("metadata", dumps({"usage": usage(s), "metrics": {"latencyMs": latency_ms(s)},
                                                 "serviceTier": wire_tier}))

        def headers(s: Session) -> dict[str, str]:
            return {"x-amzn-RequestId": f"{s.rid[:8]}-0000-4000-8000-{s.rid[-12:]:0>12}",
                    "x-amzn-bedrock-service-tier": raw}

        return Call(req, render, stream_body, stream_media="application/vnd.amazon.eventstream", headers=headers)
