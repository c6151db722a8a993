"""OpenAI dialect: ``/v1/chat/completions`` and ``/v1/responses`` (JSON and SSE).

Follows providers.md §1 and openai 3.57's types: ``service_tier`` in the body and
echoed as the served tier (auto/default/scale -> "default", fast -> "priority"),
usage with ``cached_tokens``/``reasoning_tokens``, flex shed as 429
``resource_unavailable`` (or ``flex_unavailable``), ordinary 429s with
``x-ratelimit-*`` and ``retry-after``.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .engine import EmuError, GenRequest, Session, is_reasoning_model
from .http import dumps, json_response
from .wire import Call, WireAPI, WireError

__all__ = ["OpenAIAPI"]

_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
_EFFORT = {"none": 0.0, "minimal": 0.2, "low": 0.5, "medium": 1.0, "high": 2.0, "xhigh": 3.0}


def _err(status: int, message: str, type_: str, code: str | None, param: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                         status, headers)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
            elif isinstance(part, str):
                out.append(part)
        return "\n".join(out)
    return ""


class OpenAIAPI(WireAPI):
    provider = "openai"

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"])]

    # -- errors ------------------------------------------------------------------------------
    def bad_request(self, message: str) -> Response:
        return _err(400, message, "invalid_request_error", None)

    def auth_error(self) -> Response:
        return _err(401, "Incorrect API key provided: inval*****. You can find your API key at "
                         "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")

    def error_response(self, err: EmuError, req: GenRequest) -> Response:
        k = self.engine.knobs
        if err.kind in ("shed", "timeout"):
            msg = ("The flex processing tier is currently unavailable due to high demand. Please retry later "
                   "or use the default service tier." if err.kind == "shed" else
                   "Request timed out waiting for flex processing capacity. Please retry later or use the "
                   "default service tier.")
            return _err(429, msg, "rate_limit_error", k.openai_flex_code)
        if err.kind == "rate_limit":
            h = dict(err.detail.get("headers", {}))
            h["retry-after"] = str(int(max(1, round(err.retry_after or 1))))
            h["retry-after-ms"] = str(int((err.retry_after or 1) * 1000))
            return _err(429, f"{err.message} Please try again in {err.retry_after:.0f}s.",
                        err.detail.get("scope", "requests"), "rate_limit_exceeded", headers=h)
        if err.kind == "quota":
            return _err(429, err.message, "insufficient_quota", "insufficient_quota")
        if err.kind == "server_502":
            return Response(b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>",
                            502, media_type="text/html")
        if err.kind == "preempted":
            return _err(503, "The server is overloaded; the request was preempted.", "server_error",
                        "server_is_overloaded")
        if err.kind == "gone":
            return _err(499, "Client closed request.", "invalid_request_error", None)
        return _err(500, "The server had an error while processing your request. Sorry about that!",
                    "server_error", None)

    def stream_error(self, err: EmuError) -> bytes:
        body = {"error": {"message": err.message, "type": "server_error", "param": None,
                          "code": "server_is_overloaded" if err.kind == "preempted" else None}}
        return b"data: " + dumps(body) + b"\n\n"

    # -- parsing ----------------------------------------------------------------------------------
    def _gen_request(self, body: dict[str, Any], prompt: str, max_tokens: Any, effort: Any) -> GenRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(_err(400, "you must provide a model parameter", "invalid_request_error", None,
                                 "model"))
        entry = self.engine.catalog.find_wire("openai", model)
        if entry is None:
            raise WireError(_err(404, f"The model `{model}` does not exist or you do not have access to it.",
                                 "invalid_request_error", "model_not_found"), model_wire=model)
        raw = body.get("service_tier")
        if raw is None:
            raw = "auto"
        if raw not in _TIERS:
            raise WireError(_err(400, f"Invalid value: '{raw}'. Supported values are: 'auto', 'default', "
                                 "'flex', 'scale', and 'priority'.", "invalid_request_error", "invalid_value",
                                 "service_tier"), model_wire=model, entry=entry, tier=str(raw))
        if raw == "flex":
            tier = served = "flex"
            if not entry.supports_flex:
                raise WireError(_err(400, f"Flex is not available for this model ({model}). Use "
                                     "service_tier 'auto' or 'default'.", "invalid_request_error",
                                     "invalid_value", "service_tier"), model_wire=model, entry=entry, tier="flex")
        elif raw in ("priority", "fast", "ultrafast"):
            tier = "priority"
            served = "priority" if entry.supports("priority") else "standard"
        else:
            tier = served = "standard"
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens < 1):
            raise WireError(_err(400, f"Invalid 'max_tokens': integer below minimum value. Expected a value "
                                 f">= 1, but got {max_tokens} instead.", "invalid_request_error",
                                 "integer_below_min_value", "max_tokens"), model_wire=model, entry=entry,
                            tier=tier)
        reasoning = is_reasoning_model("openai", model)
        scale = _EFFORT.get(effort, 1.0) if isinstance(effort, str) else 1.0
        return GenRequest(provider="openai", model_wire=model, entry=entry, tier=tier, served_tier=served,
                          prompt_text=prompt, max_tokens=max_tokens, stream=bool(body.get("stream")),
                          reasoning=reasoning, reasoning_scale=scale)

    @staticmethod
    def _wire_tier(req: GenRequest) -> str:
        return {"standard": "default", "flex": "flex", "priority": "priority"}[req.served_tier]

    def _headers(self, sess: Session) -> dict[str, str]:
        h = dict(sess.rate_headers)
        h["x-request-id"] = f"req_{sess.rid}"
        h["openai-processing-ms"] = str(int(max(0.0, self.engine.clock.now() - sess.t0) * 1000))
        h["openai-version"] = "2020-10-01"
        return h

    # -- chat completions ------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Any:
        return await self.run(request, self._build_chat)

    def _build_chat(self, body: dict[str, Any], request: Request) -> Call:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise WireError(_err(400, "'messages' must be a non-empty array", "invalid_request_error", None,
                                 "messages"), model_wire=str(body.get("model", "")))
        prompt = "\n".join(_text_of(m.get("content")) for m in msgs if isinstance(m, dict))
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        req = self._gen_request(body, prompt, mt, body.get("reasoning_effort"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(self.engine.clock.now())

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"prompt_tokens": p.input_tokens, "completion_tokens": p.output_tokens,
                    "total_tokens": p.input_tokens + p.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": p.cached_tokens, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": p.reasoning_tokens, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0,
                                                  "rejected_prediction_tokens": 0}}

        def render(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"id": f"chatcmpl-{s.rid}", "object": "chat.completion", "created": created,
                    "model": req.model_wire, "service_tier": self._wire_tier(req), "system_fingerprint": None,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": p.text, "refusal": None,
                                                         "annotations": []},
                                 "logprobs": None, "finish_reason": p.finish}],
                    "usage": usage(s)}

        async def stream(s: Session) -> AsyncIterator[bytes]:
            p = s.plan
            assert p is not None
            base = {"id": f"chatcmpl-{s.rid}", "object": "chat.completion.chunk", "created": created,
                    "model": req.model_wire, "service_tier": self._wire_tier(req), "system_fingerprint": None}

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                c = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                if include_usage:
                    c["usage"] = None
                return b"data: " + dumps(c) + b"\n\n"

            first = True
            async for words in s.pieces(8):
                text = " ".join(words)
                if first:
                    yield chunk({"role": "assistant", "content": "", "refusal": None})
                    first = False
                    yield chunk({"content": text})
                else:
                    yield chunk({"content": " " + text})
            yield chunk({}, p.finish)
            if include_usage:
                yield b"data: " + dumps({**base, "choices": [], "usage": usage(s)}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return Call(req, render, stream, headers=self._headers, id_prefix="chatcmpl-")

    # -- responses ---------------------------------------------------------------------------------------
    async def responses(self, request: Request) -> Any:
        return await self.run(request, self._build_responses)

    def _build_responses(self, body: dict[str, Any], request: Request) -> Call:
        inp = body.get("input")
        parts: list[str] = []
        if isinstance(body.get("instructions"), str):
            parts.append(body["instructions"])
        if isinstance(inp, str):
            parts.append(inp)
        elif isinstance(inp, list):
            for it in inp:
                if isinstance(it, dict):
                    parts.append(_text_of(it.get("content")) if "content" in it else _text_of([it]))
        else:
            raise WireError(_err(400, "Missing required parameter: 'input'.", "invalid_request_error",
                                 "missing_required_parameter", "input"), model_wire=str(body.get("model", "")))
        effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        req = self._gen_request(body, "\n".join(parts), body.get("max_output_tokens"), effort)
        created = int(self.engine.clock.now())

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"input_tokens": p.input_tokens, "input_tokens_details": {"cached_tokens": p.cached_tokens},
                    "output_tokens": p.output_tokens,
                    "output_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
                    "total_tokens": p.input_tokens + p.output_tokens}

        def message(s: Session, status: str, text: str | None) -> dict[str, Any]:
            content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [],
                                                "logprobs": []}]
            return {"type": "message", "id": f"msg_{s.rid}", "role": "assistant", "status": status,
                    "content": content}

        def reasoning_item(s: Session) -> dict[str, Any]:
            return {"type": "reasoning", "id": f"rs_{s.rid}", "summary": []}

        def response_obj(s: Session, status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            incomplete = status == "incomplete"
            return {"id": f"resp_{s.rid}", "object": "response", "created_at": created, "status": status,
                    "background": False, "error": None,
                    "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                    "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
                    "model": req.model_wire, "output": output, "parallel_tool_calls": True,
                    "previous_response_id": None,
                    "reasoning": {"effort": effort, "summary": None}, "service_tier": self._wire_tier(req),
                    "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                    "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                    "usage": usage(s) if with_usage else None, "metadata": {}}

        def final_status(s: Session) -> str:
            return "incomplete" if s.plan is not None and s.plan.finish == "length" else "completed"

        def render(s: Session) -> dict[str, Any]:
            assert s.plan is not None
            out = ([reasoning_item(s)] if s.plan.reasoning_tokens else []) + \
                [message(s, "completed" if final_status(s) == "completed" else "incomplete", s.plan.text)]
            return response_obj(s, final_status(s), out, True)

        async def stream(s: Session) -> AsyncIterator[bytes]:
            p = s.plan
            assert p is not None
            seq = 0

            def ev(type_: str, payload: dict[str, Any]) -> bytes:
                nonlocal seq
                data = {"type": type_, **payload, "sequence_number": seq}
                seq += 1
                return f"event: {type_}\n".encode() + b"data: " + dumps(data) + b"\n\n"

            yield ev("response.created", {"response": response_obj(s, "in_progress", [], False)})
            yield ev("response.in_progress", {"response": response_obj(s, "in_progress", [], False)})
            idx = 0
            out: list[dict[str, Any]] = []
            if p.reasoning_tokens:
                yield ev("response.output_item.added", {"output_index": 0, "item": reasoning_item(s)})
                yield ev("response.output_item.done", {"output_index": 0, "item": reasoning_item(s)})
                out.append(reasoning_item(s))
                idx = 1
            item_id = f"msg_{s.rid}"
            yield ev("response.output_item.added", {"output_index": idx, "item": message(s, "in_progress", None)})
            yield ev("response.content_part.added", {"item_id": item_id, "output_index": idx, "content_index": 0,
                                                     "part": {"type": "output_text", "text": "",
                                                              "annotations": [], "logprobs": []}})
            first = True
            async for words in s.pieces(8):
                delta = ("" if first else " ") + " ".join(words)
                first = False
                yield ev("response.output_text.delta", {"item_id": item_id, "output_index": idx,
                                                        "content_index": 0, "delta": delta, "logprobs": []})
            text = p.text
            yield ev("response.output_text.done", {"item_id": item_id, "output_index": idx, "content_index": 0,
                                                   "text": text, "logprobs": []})
            yield ev("response.content_part.done", {"item_id": item_id, "output_index": idx, "content_index": 0,
                                                    "part": {"type": "output_text", "text": text,
                                                             "annotations": [], "logprobs": []}})
            status = final_status(s)
            msg = message(s, "completed" if status == "completed" else "incomplete", text)
            yield ev("response.output_item.done", {"output_index": idx, "item": msg})
            out.append(msg)
            final = "response.completed" if status == "completed" else "response.incomplete"
            yield ev(final, {"response": response_obj(s, status, out, True)})

        call = Call(req, render, stream, headers=self._headers, id_prefix="resp_")
        return call

