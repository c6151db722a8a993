"""Anthropic dialect: ``POST /v1/messages`` (JSON and SSE events).

Per docs/providers.md and anthropic 2.14: no flex — ``service_tier`` takes ``auto`` or
``standard_only`` and anything else is the real 400 ``invalid_request_error``;
``usage.service_tier`` is ``standard``; ``usage.input_tokens`` excludes cache reads
(``cache_read_input_tokens``), which only happen with a ``cache_control`` marker;
provider-wide overload is 529 ``overloaded_error``.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .engine import EmuError, GenRequest, Session, text_chunks
from .http import dumps, json_response
from .openai_tools import stop_list, tools_prompt
from .tools import OutputSpec, ToolSpec
from .wire import Call, WireAPI, WireError

__all__ = ["AnthropicAPI"]


def _err(status: int, type_: str, message: str, headers: dict[str, str] | None = None,
         rid: str = "req_emulator") -> Response:
    return json_response({"type": "error", "error": {"type": type_, "message": message}, "request_id": rid},
                         status, headers)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\n".encode() + b"data: " + dumps(data) + b"\n\n"


def _has_marker(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "cache_control" in obj or any(_has_marker(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_marker(v) for v in obj)
    return False


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for b in content:
            if not isinstance(b, dict):
                continue
            if isinstance(b.get("text"), str):
                out.append(b["text"])
            elif b.get("type") == "tool_use":
                out.append(dumps(b.get("input", {})).decode())
            elif b.get("type") == "tool_result":
                out.append(_text(b.get("content")))
        return "\n".join(out)
    return ""


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}


def _spec(body: dict[str, Any], msgs: list[Any]) -> OutputSpec | None:
    """Tools, ``tool_choice`` and ``output_config.format`` (or beta ``output_format``) as an OutputSpec."""
    tools = [ToolSpec.of(t["name"], t.get("input_schema")) for t in body.get("tools") or []
             if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("type") in (None, "custom")]
    oc = body.get("output_config")
    fmt = oc.get("format") if isinstance(oc, dict) else None
    fmt = fmt if isinstance(fmt, dict) else body.get("output_format")
    schema = fmt.get("schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    if not tools and schema is None:
        return None
    tc = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    choice = {"any": "any", "tool": "tool", "none": "none"}.get(tc.get("type"), "auto")
    called: set[str] = set()
    for m in msgs:
        if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), list):
            called |= {b["name"] for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_use"
                       and isinstance(b.get("name"), str)}
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    after = last.get("role") == "user" and isinstance(last.get("content"), list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])
    return OutputSpec(tools=tools, choice=choice, forced=tc.get("name"), after_tool_result=after,
                      called=frozenset(called), json_schema=schema if isinstance(schema, dict) else None)


class AnthropicAPI(WireAPI):
    provider = "anthropic"

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    def bad_request(self, message: str) -> Response:
        return _err(400, "invalid_request_error", message)

    def auth_error(self) -> Response:
        return _err(401, "authentication_error", "invalid x-api-key")

    def error_response(self, err: EmuError, req: GenRequest) -> Response:
        if err.kind in ("overloaded", "shed", "timeout", "preempted"):
            return _err(529, "overloaded_error", "Overloaded")
        if err.kind == "rate_limit":
            h = {"retry-after": str(int(max(1, round(err.retry_after or 1))))}
            return _err(429, "rate_limit_error", "This request would exceed the rate limit for your organization "
                        "of requests per minute. Please try again later.", h)
        if err.kind == "quota":
            return _err(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. "
                        "Please go to Plans & Billing to upgrade or purchase credits.")
        if err.kind == "server_502":
            return Response(b"<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        if err.kind == "gone":
            return _err(499, "invalid_request_error", "Client closed request.")
        return _err(500, "api_error", "Internal server error")

    def stream_error(self, err: EmuError) -> bytes:
        return _sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    async def messages(self, request: Request) -> Any:
        return await self.run(request, self._build)

    def _build(self, body: dict[str, Any], request: Request) -> Call:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(_err(400, "invalid_request_error", "model: Field required"))
        entry = self.engine.catalog.find_wire("anthropic", model)
        if entry is None:
            raise WireError(_err(404, "not_found_error", f"model: {model}"), model_wire=model)
        raw = body.get("service_tier", "auto")
        if raw not in ("auto", "standard_only"):
            tier = "flex" if raw == "flex" else str(raw)
            raise WireError(_err(400, "invalid_request_error", f"service_tier: Input should be 'auto' or "
                                 f"'standard_only'"), model_wire=model, entry=entry, tier=tier)
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise WireError(_err(400, "invalid_request_error", "max_tokens: Field required" if mt is None else
                                 "max_tokens: Input should be greater than or equal to 1"),
                            model_wire=model, entry=entry, tier="standard")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise WireError(_err(400, "invalid_request_error", "messages: Field required"),
                            model_wire=model, entry=entry, tier="standard")
        parts = [_text(body.get("system"))] if body.get("system") else []
        parts += [_text(m.get("content")) for m in msgs if isinstance(m, dict)]
        thinking = body.get("thinking")
        reasoning = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        cache_ok = _has_marker(body.get("system")) or _has_marker(msgs) or \
            not self.engine.knobs.cache_requires_marker
        spec = _spec(body, msgs)
        if spec is not None and spec.unknown_forced() is not None:
            raise WireError(_err(400, "invalid_request_error", f"tool_choice.name: tool '{spec.forced}' not found "
                                 "in tools"), model_wire=model, entry=entry, tier="standard")
        req = GenRequest(provider="anthropic", model_wire=model, entry=entry, tier="standard",
                         served_tier="standard", prompt_text="\n".join(parts), max_tokens=mt,
                         stream=bool(body.get("stream")), cache_eligible=cache_ok, reasoning=reasoning,
                         stop=stop_list(body.get("stop_sequences")), output=spec,
                         prompt_prefix=tools_prompt(body.get("tools"), body.get("output_config")
                                                    or body.get("output_format")) if spec is not None else "")

        def usage(s: Session, output: int | None = None) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"input_tokens": p.input_tokens - p.cached_tokens, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": p.cached_tokens,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                    "output_tokens": p.output_tokens if output is None else output,
                    "server_tool_use": None, "service_tier": "standard"}

        def stop(s: Session) -> str:
            return _STOP[s.plan.finish] if s.plan is not None else "end_turn"

        def stop_seq(s: Session) -> str | None:
            return s.plan.stop_sequence if s.plan is not None else None

        def thinking_text(s: Session) -> str:
            return f"(thinking: {s.plan.reasoning_tokens} tokens)" if s.plan else ""

        def content(s: Session) -> list[dict[str, Any]]:
            assert s.plan is not None
            blocks: list[dict[str, Any]] = []
            if s.plan.reasoning_tokens:
                blocks.append({"type": "thinking", "thinking": thinking_text(s), "signature": f"sig_{s.rid}"})
            if s.plan.tool_calls:
                blocks += [{"type": "tool_use", "id": f"toolu_{tc.id}", "name": tc.name, "input": tc.input}
                           for tc in s.plan.tool_calls]
            else:
                blocks.append({"type": "text", "text": s.plan.text})
            return blocks

        def message(s: Session, blocks: list[dict[str, Any]], stop_reason: str | None,
                    u: dict[str, Any]) -> dict[str, Any]:
            return {"id": f"msg_{s.rid}", "type": "message", "role": "assistant", "model": model,
                    "content": blocks, "stop_reason": stop_reason,
                    "stop_sequence": stop_seq(s) if stop_reason else None, "usage": u}

        def render(s: Session) -> dict[str, Any]:
            return message(s, content(s), stop(s), usage(s))

        async def stream_body(s: Session) -> AsyncIterator[bytes]:
            yield _sse("message_start", {"type": "message_start", "message": message(s, [], None, usage(s, 1))})
            idx = 0
            if s.plan is not None and s.plan.reasoning_tokens:
                yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "thinking", "thinking": "",
                                                                     "signature": ""}})
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "thinking_delta",
                                                             "thinking": thinking_text(s)}})
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "signature_delta",
                                                             "signature": f"sig_{s.rid}"}})
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                idx = 1
            p = s.plan
            assert p is not None
            if p.tool_calls:
                yield _sse("ping", {"type": "ping"})
                for tc in p.tool_calls:
                    yield _sse("content_block_start", {"type": "content_block_start", "index": idx,
                                                       "content_block": {"type": "tool_use", "id": f"toolu_{tc.id}",
                                                                         "name": tc.name, "input": {}}})
                    js = tc.arguments_json
                    size = max(1, -(-len(js) // 6))
                    async for frag in s.paced([js[i:i + size] for i in range(0, len(js), size)]):
                        yield _sse("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                           "delta": {"type": "input_json_delta",
                                                                     "partial_json": frag}})
                    yield _sse("content_block_stop", {"type": "content_block_stop", "index": idx})
                    idx += 1
            else:
                yield _sse("content_block_start", {"type": "content_block_start", "index": idx,
                                                   "content_block": {"type": "text", "text": ""}})
                yield _sse("ping", {"type": "ping"})
                async for text in s.paced(text_chunks(p, 8) or [""]):
                    yield _sse("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                       "delta": {"type": "text_delta", "text": text}})
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": idx})
            yield _sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop(s), "stop_sequence": stop_seq(s)},
                                         "usage": usage(s)})
            yield _sse("message_stop", {"type": "message_stop"})

        def headers(s: Session) -> dict[str, str]:
            k = self.engine.knobs
            h = {"request-id": f"req_{s.rid}",
                 "anthropic-ratelimit-requests-limit": str(k.rpm_limit),
                 "anthropic-ratelimit-requests-remaining": s.rate_headers.get("x-ratelimit-remaining-requests", ""),
                 "anthropic-ratelimit-tokens-limit": str(k.tpm_limit),
                 "anthropic-ratelimit-tokens-remaining": s.rate_headers.get("x-ratelimit-remaining-tokens", "")}
            return h

        return Call(req, render, stream_body, headers=headers, id_prefix="msg_")
