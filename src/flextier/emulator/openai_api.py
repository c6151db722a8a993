"""OpenAI dialect: ``/v1/chat/completions`` and ``/v1/responses`` (JSON and SSE), ``GET /v1/responses/{id}``.

Responses background mode (``background: true``, which needs ``store``): the POST answers at
once with the response object (its ``id``, ``status: "queued"``, ``background: true``, no output
or usage); admission (rate limits, faults, the flex queue), service and billing go on in the
emulator whoever is listening, and ``GET /v1/responses/{id}`` returns it ``queued`` until it is
``completed`` (or ``incomplete``; ``failed`` with the error object the POST would have carried,
e.g. ``resource_unavailable`` for a flex shed, nothing billed). ``POST /v1/responses/{id}/cancel``
returns the object as it is (a finished one stays finished; a running one runs to the end and is
billed, as the provider may). flextier's job path uses it to record the id before the answer
(providers/openai, issue 19).

Stored chat completions (``store: true``): ``GET /v1/chat/completions`` lists them, filtered by
``model`` and ``metadata[KEY]=VALUE`` pairs (``limit``, ``order``, ``after``), and
``GET /v1/chat/completions/{id}`` returns one, as OpenAI's API reference describes (list object
``{"object": "list", "data", "first_id", "last_id", "has_more"}``). A completion is stored when
its work is billed (a client that left still paid, so its answer is there); flextier's resume
looks up the answers of sends a crash cut off there (providers/openai, issue 19). Listing is
free: nothing here touches the ledger.

Structured output, tools, ``n``/``stop``/``seed``/``logprobs`` are read by :mod:`.openai_tools`
and answered by the engine (:mod:`.tools`, :mod:`.structured`); plain chat keeps its fast path.

Follows docs/providers.md and openai 3.57's types: ``service_tier`` in the body and
echoed as the served tier (auto/default/scale -> "default", fast -> "priority"),
usage with ``cached_tokens``/``reasoning_tokens``, flex shed as 429
``resource_unavailable`` (or ``flex_unavailable``), ordinary 429s with
``x-ratelimit-*`` and ``retry-after``.
"""
from __future__ import annotations

from types import SimpleNamespace

from collections import OrderedDict
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .engine import EmuError, GenRequest, Plan, Session, is_reasoning_model, text_chunks
from .http import dumps, json_response
from .logprobs import token_logprobs
from .openai_tools import ResponseStore, chat_spec, responses_spec, stop_list, tools_prompt
from .wire import Call, WireAPI, WireError

__all__ = ["OpenAIAPI"]

_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "stop_sequence": "stop"}
_EFFORT = {"none": 0.0, "minimal": 0.2, "low": 0.5, "medium": 1.0, "high": 2.0, "xhigh": 3.0}


def _err(status: int, message: str, type_: str, code: str | None, param: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                         status, headers)


def _split(text: str, n: int) -> list[str]:
    """``text`` in about ``n`` pieces that concatenate to it (stream argument deltas)."""
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


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


class ChatStore:
    """Stored chat completions (bounded, oldest dropped first), with their metadata."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._d: "OrderedDict[str, tuple[dict[str, Any], dict[str, str]]]" = OrderedDict()

    def put(self, obj: dict[str, Any], metadata: dict[str, str]) -> None:
        self._d[obj["id"]] = (obj, metadata)
        while len(self._d) > self.limit:
            self._d.popitem(last=False)

    def get(self, cid: str) -> dict[str, Any] | None:
        hit = self._d.get(cid)
        return None if hit is None else {**hit[0], "metadata": hit[1]}

    def list(self, *, model: str | None, metadata: dict[str, str], after: str | None, limit: int,
             order: str) -> dict[str, Any]:
        rows = [(o, m) for o, m in self._d.values()
                if (model is None or o.get("model") == model) and all(m.get(k) == v for k, v in metadata.items())]
        if order == "desc":
            rows.reverse()
        if after is not None:
            ids = [o["id"] for o, _ in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        page = [{**o, "metadata": m} for o, m in rows[:limit]]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(rows) > limit}


class OpenAIAPI(WireAPI):
    provider = "openai"

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.store = ResponseStore()
        self.chats = ChatStore()

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/chat/completions", self.list_chats, methods=["GET"]),
                Route("/v1/chat/completions/{completion_id}", self.get_chat, methods=["GET"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/responses/{response_id}", self.get_response, methods=["GET"]),
                Route("/v1/responses/{response_id}/cancel", self.get_response, methods=["POST"])]

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
        entry = self.engine.catalog.find_wire(self.provider, model)
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
        return GenRequest(provider=self.provider, model_wire=model, entry=entry, tier=tier, served_tier=served,
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

    async def list_chats(self, request: Request) -> Any:
        q = request.query_params
        meta = {k[len("metadata["):-1]: v for k, v in q.multi_items() if k.startswith("metadata[") and k.endswith("]")}
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            return _err(400, "Invalid 'limit': expected an integer.", "invalid_request_error", "invalid_value", "limit")
        if not 1 <= limit <= 100:
            return _err(400, f"Invalid 'limit': expected an integer between 1 and 100, got {limit}.",
                        "invalid_request_error", "invalid_value", "limit")
        order = q.get("order", "asc")
        if order not in ("asc", "desc"):
            return _err(400, f"Invalid 'order': {order!r}.", "invalid_request_error", "invalid_value", "order")
        return json_response(self.chats.list(model=q.get("model"), metadata=meta, after=q.get("after"), limit=limit,
                                             order=order))

    async def get_chat(self, request: Request) -> Any:
        cid = request.path_params["completion_id"]
        hit = self.chats.get(cid)
        if hit is None:
            return _err(404, f"Chat completion with id '{cid}' not found.", "invalid_request_error", None)
        return json_response(hit)

    def _build_chat(self, body: dict[str, Any], request: Request) -> Call:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise WireError(_err(400, "'messages' must be a non-empty array", "invalid_request_error", None,
                                 "messages"), model_wire=str(body.get("model", "")))
        prompt = "\n".join(_text_of(m.get("content")) for m in msgs if isinstance(m, dict))
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        spec = chat_spec(body, msgs) if ("tools" in body or "response_format" in body) else None
        self._check_choice(body, spec)
        if spec is not None:
            calls = [tc.get("function", {}).get("arguments", "") for m in msgs if isinstance(m, dict)
                     for tc in (m.get("tool_calls") or []) if isinstance(tc, dict)]
            prompt = "\n".join([prompt, *[c for c in calls if isinstance(c, str)]])
        req = self._gen_request(body, prompt, mt, body.get("reasoning_effort"))
        if spec is not None:
            if spec.json_object and "json" not in prompt.lower():
                raise WireError(_err(400, "'messages' must contain the word 'json' in some form, to use "
                                     "'response_format' of type 'json_object'.", "invalid_request_error", None,
                                     "messages"), model_wire=req.model_wire, entry=req.entry, tier=req.tier)
            req.prompt_prefix = tools_prompt(body.get("tools"), body.get("response_format"))
        self._extras(req, body, spec)
        n = body.get("n")
        if n is not None:
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
                raise WireError(_err(400, f"Invalid value for 'n': expected an integer in [1, 128], got {n!r}.",
                                     "invalid_request_error", "invalid_value", "n"), model_wire=req.model_wire,
                                entry=req.entry, tier=req.tier)
            req.n = n
        # OpenAI answers a forced call (tool_choice "required" or a named function) with
        # finish_reason "stop", and only an "auto" call with "tool_calls"
        forced = spec is not None and spec.choice in ("any", "tool")

        def finish(c: Plan) -> str:
            return "stop" if forced and c.finish == "tool_calls" else _FINISH[c.finish]

        want_lp = body.get("logprobs") is True
        top_lp = body.get("top_logprobs") if isinstance(body.get("top_logprobs"), int) else 0
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = req.created if req.created is not None else int(self.engine.clock.now())
        seed = self.engine.seed

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"prompt_tokens": p.input_tokens, "completion_tokens": p.output_tokens,
                    "total_tokens": p.input_tokens + p.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": p.cached_tokens, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": p.all_reasoning_tokens,
                                                  "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                                  "rejected_prediction_tokens": 0}}

        def tool_calls(c: Plan) -> list[dict[str, Any]]:
            return [{"id": f"call_{tc.id}", "type": "function",
                     "function": {"name": tc.name, "arguments": tc.arguments_json}} for tc in c.tool_calls or []]

        def logprobs(text: str) -> dict[str, Any] | None:
            if not want_lp:
                return None
            return {"content": token_logprobs(text, top_lp, seed), "refusal": None}

        def render(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            if p.others is None and p.tool_calls is None and not want_lp:      # plain chat: the fast path
                choices = [{"index": 0, "message": {"role": "assistant", "content": p.text, "refusal": None,
                                                    "annotations": []},
                            "logprobs": None, "finish_reason": "length" if p.finish == "length" else "stop"}]
            else:
                choices = []
                for i, c in enumerate(p.choices):
                    msg: dict[str, Any] = {"role": "assistant", "content": None if c.tool_calls else c.text,
                                           "refusal": None, "annotations": []}
                    if c.tool_calls:
                        msg["tool_calls"] = tool_calls(c)
                    choices.append({"index": i, "message": msg,
                                    "logprobs": None if c.tool_calls else logprobs(c.text),
                                    "finish_reason": finish(c)})
            return {"id": f"chatcmpl-{s.rid}", "object": "chat.completion", "created": created,
                    "model": req.model_wire, "service_tier": self._wire_tier(req), "system_fingerprint": None,
                    "choices": choices, "usage": usage(s)}

        async def stream(s: Session) -> AsyncIterator[bytes]:
            p = s.plan
            assert p is not None
            base = {"id": f"chatcmpl-{s.rid}", "object": "chat.completion.chunk", "created": created,
                    "model": req.model_wire, "service_tier": self._wire_tier(req), "system_fingerprint": None}

            def chunk(i: int, delta: dict[str, Any], finish: str | None = None,
                      lp: dict[str, Any] | None = None) -> bytes:
                c = {**base, "choices": [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}]}
                if include_usage:
                    c["usage"] = None
                return b"data: " + dumps(c) + b"\n\n"

            groups: list[list[bytes]] = []
            for i, c in enumerate(p.choices):
                head = [chunk(i, {"role": "assistant", "content": None if c.tool_calls else "", "refusal": None})]
                if c.tool_calls:
                    for j, tc in enumerate(c.tool_calls):
                        head.append(chunk(i, {"tool_calls": [{"index": j, "id": f"call_{tc.id}", "type": "function",
                                                              "function": {"name": tc.name, "arguments": ""}}]}))
                        groups.append(head)
                        head = []
                        for frag in _split(tc.arguments_json, 6):
                            groups.append([chunk(i, {"tool_calls": [{"index": j, "function": {"arguments": frag}}]})])
                else:
                    for frag in text_chunks(c, 8):
                        head.append(chunk(i, {"content": frag}, None, logprobs(frag)))
                        groups.append(head)
                        head = []
                tail = chunk(i, {}, finish(c))
                if head or not groups:
                    groups.append(head + [tail])
                else:
                    groups[-1].append(tail)
            async for group in s.paced(groups):
                for b in group:
                    yield b
            if include_usage:
                yield b"data: " + dumps({**base, "choices": [], "usage": usage(s)}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        keep = None
        if body.get("store") is True:
            md = body.get("metadata")
            meta = {str(k): str(v) for k, v in md.items()} if isinstance(md, dict) else {}

            def keep(s: Session, obj: dict[str, Any]) -> None:
                self.chats.put(obj, meta)

        return Call(req, render, stream, headers=self._headers, id_prefix="chatcmpl-", keep=keep)

    @staticmethod
    def _check_choice(body: dict[str, Any], spec: Any) -> None:
        """A ``tool_choice`` that names no sent tool, or forces one without tools: 400 like OpenAI."""
        model = str(body.get("model", ""))
        bad = spec.unknown_forced() if spec is not None else None
        if bad is not None:
            raise WireError(_err(400, f"Invalid value for 'tool_choice': function '{bad}' is not among the "
                                 "provided tools.", "invalid_request_error", "invalid_value", "tool_choice"),
                            model_wire=model)
        if body.get("tool_choice") not in (None, "none", "auto") and not body.get("tools"):
            raise WireError(_err(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                                 "'tools' are specified.", "invalid_request_error", None, "tool_choice"),
                            model_wire=model)

    def _extras(self, req: GenRequest, body: dict[str, Any], spec: Any) -> None:
        """``stop``, ``seed`` and the output spec onto the neutral request."""
        req.output = spec
        if "stop" in body:
            req.stop = stop_list(body["stop"])
        seed = body.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            req.seed = seed

    # -- responses ---------------------------------------------------------------------------------------
    async def responses(self, request: Request) -> Any:
        return await self.run(request, self._build_responses)

    async def get_response(self, request: Request) -> Any:
        rid = request.path_params["response_id"]
        hit = self.store.get(rid)
        if hit is None:
            return _err(404, f"Response with id '{rid}' not found.", "invalid_request_error", None)
        return json_response(hit[0])

    def _build_responses(self, body: dict[str, Any], request: Request) -> Call:
        inp = body.get("input")
        parts: list[str] = []
        items: list[Any] = []
        prev_id = body.get("previous_response_id")
        prev_called: frozenset[str] = frozenset()
        if prev_id is not None:
            hit = self.store.get(prev_id) if isinstance(prev_id, str) else None
            if hit is None:
                raise WireError(_err(400, f"Previous response with id '{prev_id}' not found.",
                                     "invalid_request_error", "previous_response_not_found",
                                     "previous_response_id"), model_wire=str(body.get("model", "")))
            parts.append(hit[1])
            prev_called = hit[2]
        if isinstance(body.get("instructions"), str):
            parts.append(body["instructions"])
        if isinstance(inp, str):
            parts.append(inp)
        elif isinstance(inp, list):
            items = inp
            for it in inp:
                if isinstance(it, dict):
                    if it.get("type") == "function_call":
                        parts.append(str(it.get("arguments", "")))
                    elif it.get("type") == "function_call_output":
                        parts.append(_text_of(it.get("output")))
                    else:
                        parts.append(_text_of(it.get("content")) if "content" in it else _text_of([it]))
        else:
            raise WireError(_err(400, "Missing required parameter: 'input'.", "invalid_request_error",
                                 "missing_required_parameter", "input"), model_wire=str(body.get("model", "")))
        history = "\n".join(parts)
        spec = responses_spec(body, items, prev_called)
        self._check_choice(body, spec)
        effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        req = self._gen_request(body, history, body.get("max_output_tokens"), effort)
        if spec is not None:
            if spec.json_object and "json" not in history.lower():
                raise WireError(_err(400, "Response input messages must contain the word 'json' in some form to "
                                     "use 'text.format' of type 'json_object'.", "invalid_request_error", None,
                                     "input"), model_wire=req.model_wire, entry=req.entry, tier=req.tier)
            req.prompt_prefix = tools_prompt(body.get("tools"), (body.get("text") or {}).get("format"))
        self._extras(req, body, spec)
        include = body.get("include") if isinstance(body.get("include"), list) else []
        want_lp = "message.output_text.logprobs" in include
        top_lp = body.get("top_logprobs") if isinstance(body.get("top_logprobs"), int) else 0
        store = body.get("store") is not False
        background = body.get("background") is True and not body.get("stream")
        if background and not store:
            raise WireError(_err(400, "Background mode requires 'store' to be true.", "invalid_request_error",
                                 None, "store"), model_wire=req.model_wire, entry=req.entry, tier=req.tier)
        created = int(self.engine.clock.now())
        seed = self.engine.seed

        def usage(s: Session) -> dict[str, Any]:
            p = s.plan
            assert p is not None
            return {"input_tokens": p.input_tokens, "input_tokens_details": {"cached_tokens": p.cached_tokens},
                    "output_tokens": p.output_tokens,
                    "output_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
                    "total_tokens": p.input_tokens + p.output_tokens}

        def part(text: str) -> dict[str, Any]:
            return {"type": "output_text", "text": text, "annotations": [],
                    "logprobs": token_logprobs(text, top_lp, seed) if want_lp and text else []}

        def message(s: Session, status: str, text: str | None) -> dict[str, Any]:
            content = [] if text is None else [part(text)]
            return {"type": "message", "id": f"msg_{s.rid}", "role": "assistant", "status": status,
                    "content": content}

        def fcall(s: Session, j: int, tc: Any, status: str, args: str) -> dict[str, Any]:
            return {"type": "function_call", "id": f"fc_{s.rid}{j}", "call_id": f"call_{tc.id}", "name": tc.name,
                    "arguments": args, "status": status}

        def reasoning_item(s: Session) -> dict[str, Any]:
            return {"type": "reasoning", "id": f"rs_{s.rid}", "summary": []}

        def response_obj(s: Session, status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
            incomplete = status == "incomplete"
            text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
            return {"id": f"resp_{s.rid}", "object": "response", "created_at": created, "status": status,
                    "background": background, "error": None,
                    "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                    "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
                    "model": req.model_wire, "output": output, "parallel_tool_calls": True,
                    "previous_response_id": prev_id,
                    "reasoning": {"effort": effort, "summary": None}, "service_tier": self._wire_tier(req),
                    "store": store, "temperature": 1.0,
                    "text": {**text_cfg, "format": text_cfg.get("format") or {"type": "text"}},
                    "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
                    "top_p": 1.0, "truncation": "disabled",
                    "usage": usage(s) if with_usage else None, "metadata": body.get("metadata") or {}}

        def final_status(s: Session) -> str:
            return "incomplete" if s.plan is not None and s.plan.finish == "length" else "completed"

        def outputs(s: Session) -> list[dict[str, Any]]:
            assert s.plan is not None
            p = s.plan
            out = [reasoning_item(s)] if p.reasoning_tokens else []
            if p.tool_calls:
                out += [fcall(s, j, tc, "completed", tc.arguments_json) for j, tc in enumerate(p.tool_calls)]
            else:
                out.append(message(s, "completed" if final_status(s) == "completed" else "incomplete", p.text))
            return out

        def keep(s: Session, obj: dict[str, Any]) -> None:
            if store:
                p = s.plan
                assert p is not None
                said = "\n".join(tc.arguments_json for tc in p.tool_calls) if p.tool_calls else p.text
                called = frozenset(tc.name for tc in p.tool_calls or []) | (spec.called if spec else prev_called)
                self.store.put(obj["id"], obj, history + "\n" + said, called)

        def render(s: Session) -> dict[str, Any]:
            obj = response_obj(s, final_status(s), outputs(s), True)
            keep(s, obj)
            return obj

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
            status = final_status(s)
            if p.tool_calls:
                for j, tc in enumerate(p.tool_calls):
                    item_id = f"fc_{s.rid}{j}"
                    yield ev("response.output_item.added", {"output_index": idx,
                                                            "item": fcall(s, j, tc, "in_progress", "")})
                    async for frag in s.paced(_split(tc.arguments_json, 6)):
                        yield ev("response.function_call_arguments.delta", {"item_id": item_id, "output_index": idx,
                                                                            "delta": frag})
                    yield ev("response.function_call_arguments.done", {"item_id": item_id, "output_index": idx,
                                                                       "name": tc.name,
                                                                       "arguments": tc.arguments_json})
                    done = fcall(s, j, tc, "completed", tc.arguments_json)
                    yield ev("response.output_item.done", {"output_index": idx, "item": done})
                    out.append(done)
                    idx += 1
            else:
                item_id = f"msg_{s.rid}"
                yield ev("response.output_item.added", {"output_index": idx,
                                                        "item": message(s, "in_progress", None)})
                yield ev("response.content_part.added", {"item_id": item_id, "output_index": idx,
                                                         "content_index": 0,
                                                         "part": {"type": "output_text", "text": "",
                                                                  "annotations": [], "logprobs": []}})
                async for delta in s.paced(text_chunks(p, 8) or [""]):
                    lp = token_logprobs(delta, top_lp, seed) if want_lp and delta else []
                    yield ev("response.output_text.delta", {"item_id": item_id, "output_index": idx,
                                                            "content_index": 0, "delta": delta, "logprobs": lp})
                text = p.text
                full = part(text)
                yield ev("response.output_text.done", {"item_id": item_id, "output_index": idx,
                                                       "content_index": 0, "text": text,
                                                       "logprobs": full["logprobs"]})
                yield ev("response.content_part.done", {"item_id": item_id, "output_index": idx,
                                                        "content_index": 0, "part": full})
                msg = message(s, "completed" if status == "completed" else "incomplete", text)
                yield ev("response.output_item.done", {"output_index": idx, "item": msg})
                out.append(msg)
            final = "response.completed" if status == "completed" else "response.incomplete"
            obj = response_obj(s, status, out, True)
            keep(s, obj)
            yield ev(final, {"response": obj})

        def pending(rid: str) -> dict[str, Any]:
            obj = response_obj(SimpleNamespace(rid=rid), "queued", [], False)
            self.store.put(obj["id"], obj, history, prev_called)
            return obj

        def failed(rid: str, error: dict[str, Any]) -> None:
            obj = response_obj(SimpleNamespace(rid=rid), "failed", [], False)
            obj["error"] = {"code": error.get("code") or error.get("type") or "server_error",
                            "message": str(error.get("message") or "failed")}
            self.store.put(obj["id"], obj, history, prev_called)

        call = Call(req, render, stream, headers=self._headers, id_prefix="resp_",
                    background=pending if background else None, failed=failed if background else None)
        return call
