"""Gemini dialect: ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``.

Per docs/providers.md and google-genai 3.6.1: the tier sits at the request root as
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

from .engine import EmuError, GenRequest, Plan, Session, is_reasoning_model, text_chunks
from .http import dumps, json_response
from .logprobs import token_logprobs
from .openai_tools import stop_list, tools_prompt
from .structured import normalize_gemini
from .tools import OutputSpec, ToolSpec
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


def _get(d: Any, camel: str, snake: str) -> Any:
    """A field the SDK sends in camelCase and the REST docs spell in snake_case."""
    if not isinstance(d, dict):
        return None
    v = d.get(camel)
    return d.get(snake) if v is None else v


def _spec(body: dict[str, Any], gc: Any, contents: list[Any]) -> OutputSpec | None:
    """``responseSchema``/``responseJsonSchema`` and ``tools``/``toolConfig`` as an OutputSpec."""
    schema: Any = None
    json_object = False
    mime = str(_get(gc, "responseMimeType", "response_mime_type") or "").lower()
    if mime == "text/x.enum":
        raw = _get(gc, "responseSchema", "response_schema")
        if isinstance(raw, dict) and raw.get("enum"):
            return OutputSpec(json_schema={"enum": list(raw["enum"])}, enum_text=True)
    if mime == "application/json":
        raw_js = _get(gc, "responseJsonSchema", "response_json_schema")
        raw = _get(gc, "responseSchema", "response_schema")
        if isinstance(raw_js, dict):
            schema = raw_js
        elif isinstance(raw, dict):
            schema = normalize_gemini(raw)
        else:
            json_object = True
    tools: list[ToolSpec] = []
    for t in body.get("tools") or []:
        for fd in _get(t, "functionDeclarations", "function_declarations") or []:
            if isinstance(fd, dict) and isinstance(fd.get("name"), str):
                js = _get(fd, "parametersJsonSchema", "parameters_json_schema")
                params = js if isinstance(js, dict) else normalize_gemini(fd.get("parameters"))
                tools.append(ToolSpec.of(fd["name"], params))
    if not tools and schema is None and not json_object:
        return None
    fcc = _get(_get(body, "toolConfig", "tool_config"), "functionCallingConfig", "function_calling_config") or {}
    mode = str(fcc.get("mode") or "AUTO").upper()
    allowed = _get(fcc, "allowedFunctionNames", "allowed_function_names")
    choice, forced = {"ANY": "any", "NONE": "none"}.get(mode, "auto"), None
    if isinstance(allowed, list) and allowed and choice == "any":
        tools = [t for t in tools if t.name in allowed] or tools
        if len(tools) == 1:
            choice, forced = "tool", tools[0].name
    called: set[str] = set()
    for c in contents:
        if isinstance(c, dict) and c.get("role") == "model":
            for part in c.get("parts") or []:
                fc = _get(part, "functionCall", "function_call")
                if isinstance(fc, dict) and isinstance(fc.get("name"), str):
                    called.add(fc["name"])
    last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
    after = any(_get(p, "functionResponse", "function_response") is not None for p in last.get("parts") or [])
    return OutputSpec(tools=tools, choice=choice, forced=forced, after_tool_result=after, called=frozenset(called),
                      json_schema=schema, json_object=json_object)


def _logprobs(text: str, top: int, seed: int) -> dict[str, Any]:
    """``avgLogprobs`` and ``logprobsResult`` of a candidate (``responseLogprobs: true``)."""
    toks = token_logprobs(text, max(1, top), seed)

    def cand(t: dict[str, Any]) -> dict[str, Any]:
        return {"token": t["token"], "logProbability": t["logprob"]}
    total = sum(t["logprob"] for t in toks)
    res = {"chosenCandidates": [cand(t) for t in toks], "logProbabilitySum": round(total, 6),
           "topCandidates": [{"candidates": [cand(x) for x in t["top_logprobs"][:top]]} for t in toks] if top else []}
    return {"avgLogprobs": round(total / len(toks), 6) if toks else 0.0, "logprobsResult": res}


def _parts(c: Plan) -> list[dict[str, Any]]:
    if c.tool_calls:
        return [{"functionCall": {"name": tc.name, "args": tc.input}} for tc in c.tool_calls]
    return [{"text": c.text}]


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
                    if isinstance(part, dict):
                        if isinstance(part.get("text"), str):
                            texts.append(part["text"])
                        elif len(part) == 1 and isinstance(next(iter(part.values())), dict):
                            texts.append(dumps(part).decode())     # functionCall / functionResponse
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
        spec = _spec(body, gc, contents)
        prefix = tools_prompt(body.get("tools"), _get(gc, "responseJsonSchema", "response_json_schema"),
                              _get(gc, "responseSchema", "response_schema")) if spec is not None else ""
        req = GenRequest(provider="gemini", model_wire=model, entry=entry, tier=tier, served_tier=served,
                         prompt_text="\n".join(texts), max_tokens=mt, stream=stream,
                         reasoning=is_reasoning_model("gemini", model), reasoning_scale=scale,
                         server_timeout_s=timeout_s, output=spec,
                         stop=stop_list(_get(gc, "stopSequences", "stop_sequences")), prompt_prefix=prefix)
        n = _get(gc, "candidateCount", "candidate_count")
        if n is not None:
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
                raise WireError(_err(400, f"Invalid value at 'generation_config.candidate_count' ({n!r})"),
                                model_wire=model, entry=entry, tier=tier)
            req.n = n
        want_lp = _get(gc, "responseLogprobs", "response_logprobs") is True
        top_lp = _get(gc, "logprobs", "logprobs")
        top_lp = top_lp if isinstance(top_lp, int) and not isinstance(top_lp, bool) else 0
        emu_seed = self.engine.seed
        seed = gc.get("seed") if isinstance(gc, dict) else None
        if isinstance(seed, int) and not isinstance(seed, bool):
            req.seed = seed

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            u: dict[str, Any] = {"promptTokenCount": p.input_tokens,
                                 "candidatesTokenCount": sum(c.visible_tokens for c in p.choices),
                                 "totalTokenCount": p.input_tokens + p.output_tokens,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p.input_tokens}],
                                 "serviceTier": served.upper()}
            if p.cached_tokens:
                u["cachedContentTokenCount"] = p.cached_tokens
                u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": p.cached_tokens}]
            if p.all_reasoning_tokens:
                u["thoughtsTokenCount"] = p.all_reasoning_tokens
            return u

        def finish(c: Plan) -> str:
            return "MAX_TOKENS" if c.finish == "length" else "STOP"

        def render(s: Session) -> dict[str, Any]:
            assert s.plan is not None
            cands = []
            for i, c in enumerate(s.plan.choices):
                cd: dict[str, Any] = {"content": {"parts": _parts(c), "role": "model"}, "finishReason": finish(c),
                                      "index": i}
                if want_lp and not c.tool_calls:
                    cd.update(_logprobs(c.text, top_lp, emu_seed))
                cands.append(cd)
            return {"candidates": cands,
                    "usageMetadata": usage(s), "modelVersion": model, "responseId": s.rid}

        async def stream_body(s: Session) -> AsyncIterator[bytes]:
            p = s.plan
            assert p is not None
            events: list[tuple[int, list[dict[str, Any]], str | None]] = []
            for i, c in enumerate(p.choices):
                if c.tool_calls:
                    events.append((i, _parts(c), finish(c)))
                    continue
                pieces = text_chunks(c, 8) or [""]
                events += [(i, [{"text": t}], None) for t in pieces[:-1]]
                events.append((i, [{"text": pieces[-1]}], finish(c)))
            last = len(events) - 1
            async for j, (i, parts, fin) in _aenumerate(s.paced(events)):
                yield self._chunk(s, model, i, parts, fin, usage(s) if j == last else None)

        def headers(s: Session) -> dict[str, str]:
            return {"x-gemini-service-tier": served, "server-timing": f"gfet4t7; dur={int((self.engine.clock.now() - s.t0) * 1000)}"}

        return Call(req, render, stream_body, headers=headers)

    @staticmethod
    def _chunk(s: Session, model: str, index: int, parts: list[dict[str, Any]], finish: str | None,
               usage: dict[str, Any] | None) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
        if finish:
            cand["finishReason"] = finish
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": s.rid}
        if usage is not None:
            obj["usageMetadata"] = usage
        return b"data: " + dumps(obj) + b"\r\n\r\n"


async def _aenumerate(it: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    i = 0
    async for x in it:
        yield i, x
        i += 1
