"""Gemini dialect: ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``.

Per providers.md §3 and google-genai 3.6.1: the tier sits at the request root as
``serviceTier`` (SDK) or ``service_tier`` (REST docs), any case, also
``SERVICE_TIER_FLEX``; the served tier returns in the ``x-gemini-service-tier``
header and ``usageMetadata.serviceTier``. A shed flex request is 503 UNAVAILABLE
(google.rpc body), some are 429 RESOURCE_EXHAUSTED with RetryInfo. ``X-Server-Timeout``
(which the SDK sends when a client timeout is set) bounds the flex queue wait.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .engine import EmuError, GenRequest, Session, is_reasoning_model
from .http import dumps, json_response
from .wire import Call, WireAPI, WireError

__all__ = ["GeminiAPI"]

_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 499: "CANCELLED"}
_LEVEL = {"minimal": 0.2, "low": 0.5, "medium": 1.0, "high": 1.5}


def _err(code: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    e: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if details:
        e["details"] = details
    return json_response({"error": e}, code)


def _norm_tier(raw: Any) -> str | None:
    if raw is None:
        return "standard"
    if not isinstance(raw, str):
        return None
    v = raw.strip().lower()
    if v.startswith("service_tier_"):
        v = v[len("service_tier_"):]
    return {"unspecified": "standard", "standard": "standard", "flex": "flex", "priority": "priority"}.get(v)


class GeminiAPI(WireAPI):
    provider = "gemini"

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1beta/models/{target:path}", self.dispatch, methods=["POST"]),
                Route("/v1/models/{target:path}", self.dispatch, methods=["POST"])]

    def bad_request(self, message: str) -> Response:
        return _err(400, message)

    def auth_error(self) -> Response:
        # Gemini answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID
        return _err(400, "API key not valid. Please pass a valid API key.",
                    [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                      "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])

    def error_response(self, err: EmuError, req: GenRequest) -> Response:
        k = self.engine.knobs
        if err.kind == "shed":
            if err.u < k.gemini_429_fraction:
                return _err(429, "Resource has been exhausted (e.g. check quota).", [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": f"{int(k.gemini_retry_delay_s)}s"}])
            return _err(503, "The model is overloaded. Please try again later.")
        if err.kind == "timeout":
            if err.detail.get("bound") == "server":
                return _err(504, "Deadline expired before operation could complete.")
            return _err(503, "This model is currently experiencing high demand. Spikes in demand are usually "
                             "temporary. Please try again later.")
        if err.kind == "rate_limit":
            return _err(429, "You exceeded your current quota, please check your plan and billing details.", [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": f"{int(max(1, round(err.retry_after or 1)))}s"}])
        if err.kind == "quota":
            return _err(429, "You exceeded your current quota, please check your plan and billing details.", [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier",
                                 "quotaId": "GenerateContentPaidTierPerDay"}]}])
        if err.kind == "server_502":
            return Response(b"<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
        if err.kind == "preempted":
            return _err(503, "The model is overloaded. Please try again later.")
        if err.kind == "gone":
            return _err(499, "The operation was cancelled.")
        return _err(500, "An internal error has occurred. Please retry or report in "
                         "https://developers.generativeai.google/guide/troubleshooting")

    def stream_error(self, err: EmuError) -> bytes:
        code = 503 if err.kind == "preempted" else 500
        return b"data: " + dumps({"error": {"code": code, "message": err.message,
                                            "status": _STATUS[code]}}) + b"\r\n\r\n"

    async def dispatch(self, request: Request) -> Any:
        target = request.path_params["target"]
        model, _, method = target.rpartition(":")
        if method not in ("generateContent", "streamGenerateContent") or not model:
            return _err(404, f"Method {method or target} not found.")
        stream = method == "streamGenerateContent"
        return await self.run(request, lambda body, r: self._build(body, r, model, stream))

    def _build(self, body: dict[str, Any], request: Request, model: str, stream: bool) -> Call:
        entry = self.engine.catalog.find_wire("gemini", model)
        if entry is None:
            raise WireError(_err(404, f"models/{model} is not found for API version v1beta, or is not supported "
                                      "for generateContent. Call ListModels to see the list of available models "
                                      "and their supported methods."), model_wire=model)
        raw = body.get("serviceTier", body.get("service_tier"))
        tier = _norm_tier(raw)
        if tier is None:
            raise WireError(_err(400, f"Invalid value at 'service_tier' ({raw!r})"), model_wire=model,
                            entry=entry, tier=str(raw))
        served = tier
        if tier == "flex" and not entry.supports_flex:
            raise WireError(_err(400, f"Flex service tier is not supported for model {model}."),
                            model_wire=model, entry=entry, tier=tier)
        if tier == "priority" and not entry.supports("priority"):
            served = "standard"            # priority downgrades, it never fails
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise WireError(_err(400, "* GenerateContentRequest.contents: contents is not specified"),
                            model_wire=model, entry=entry, tier=tier)
        texts: list[str] = []
        si = body.get("systemInstruction") or body.get("system_instruction")
        for c in ([si] if isinstance(si, dict) else []) + contents:
            if isinstance(c, dict):
                for part in c.get("parts") or []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
        gc = body.get("generationConfig") or body.get("generation_config") or {}
        mt = gc.get("maxOutputTokens", gc.get("max_output_tokens")) if isinstance(gc, dict) else None
        if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
            raise WireError(_err(400, f"Invalid value at 'generation_config.max_output_tokens' ({mt!r})"),
                            model_wire=model, entry=entry, tier=tier)
        tc = (gc.get("thinkingConfig") or gc.get("thinking_config") or {}) if isinstance(gc, dict) else {}
        scale = 1.0
        if isinstance(tc, dict):
            budget = tc.get("thinkingBudget", tc.get("thinking_budget"))
            level = tc.get("thinkingLevel", tc.get("thinking_level"))
            if budget == 0:
                scale = 0.0
            elif isinstance(level, str):
                scale = _LEVEL.get(level.lower(), 1.0)
        timeout_s = None
        st = request.headers.get("x-server-timeout")
        if st:
            try:
                timeout_s = float(st)
            except ValueError:
                timeout_s = None
        req = GenRequest(provider="gemini", model_wire=model, entry=entry, tier=tier, served_tier=served,
                         prompt_text="\n".join(texts), max_tokens=mt, stream=stream,
                         reasoning=is_reasoning_model("gemini", model), reasoning_scale=scale,
                         server_timeout_s=timeout_s)

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            u: dict[str, Any] = {"promptTokenCount": p.input_tokens, "candidatesTokenCount": len(p.words),
                                 "totalTokenCount": p.input_tokens + p.output_tokens,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p.input_tokens}],
                                 "serviceTier": served.upper()}
            if p.cached_tokens:
                u["cachedContentTokenCount"] = p.cached_tokens
                u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": p.cached_tokens}]
            if p.reasoning_tokens:
                u["thoughtsTokenCount"] = p.reasoning_tokens
            return u

        def finish(s: Session) -> str:
            return "MAX_TOKENS" if s.plan is not None and s.plan.finish == "length" else "STOP"

        def render(s: Session) -> dict[str, Any]:
            assert s.plan is not None
            return {"candidates": [{"content": {"parts": [{"text": s.plan.text}], "role": "model"},
                                    "finishReason": finish(s), "index": 0}],
                    "usageMetadata": usage(s), "modelVersion": model, "responseId": s.rid}

        async def stream_body(s: Session) -> AsyncIterator[bytes]:
            p = s.plan
            assert p is not None
            first = True
            pending: list[str] | None = None
            async for words in s.pieces(8):
                if pending is not None:
                    yield self._chunk(s, model, ("" if first else " ") + " ".join(pending), None, None)
                    first = False
                pending = words
            text = ("" if first else " ") + " ".join(pending or [])
            yield self._chunk(s, model, text, finish(s), usage(s))

        def headers(s: Session) -> dict[str, str]:
            return {"x-gemini-service-tier": served, "server-timing": f"gfet4t7; dur={int((self.engine.clock.now() - s.t0) * 1000)}"}

        return Call(req, render, stream_body, headers=headers)

    @staticmethod
    def _chunk(s: Session, model: str, text: str, finish: str | None, usage: dict[str, Any] | None) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": s.rid}
        if usage is not None:
            obj["usageMetadata"] = usage
        return b"data: " + dumps(obj) + b"\r\n\r\n"
