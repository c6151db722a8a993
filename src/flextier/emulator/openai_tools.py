"""OpenAI request fields beyond plain chat: ``response_format``/``text.format``, ``tools``,
``tool_choice``, ``n``/``stop``/``seed``, and the Responses API's stored responses.

Chat Completions and Responses spell the same ideas differently (``{"type": "function",
"function": {...}}`` vs a flat ``{"type": "function", "name": ...}``; ``response_format``
vs ``text.format``; ``role: tool`` messages vs ``function_call_output`` items); both
end as one :class:`~.tools.OutputSpec`.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from .tools import OutputSpec, ToolSpec

__all__ = ["chat_spec", "responses_spec", "tools_prompt", "ResponseStore", "stop_list"]


def _choice(raw: Any, tools: list[ToolSpec]) -> tuple[str, str | None]:
    if raw is None:
        return "auto", None
    if isinstance(raw, str):
        return {"none": "none", "required": "any", "any": "any"}.get(raw, "auto"), None
    if isinstance(raw, dict):
        t = raw.get("type")
        if t == "function":
            fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
            name = fn.get("name")
            return ("tool", name) if isinstance(name, str) else ("any", None)
        if t == "allowed_tools":
            mode = raw.get("mode") or (raw.get("allowed_tools") or {}).get("mode")
            return ("any" if mode == "required" else "auto"), None
    return "auto", None


def _format_spec(fmt: Any) -> tuple[Any, bool]:
    """(json_schema, json_object) of a ``response_format`` / ``text.format`` object."""
    if not isinstance(fmt, dict):
        return None, False
    t = fmt.get("type")
    if t == "json_object":
        return None, True
    if t == "json_schema":
        inner = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        schema = inner.get("schema")
        return (schema if isinstance(schema, dict) else {"type": "object"}), False
    return None, False


def tools_prompt(*parts: Any) -> str:
    """Tool and schema definitions as prompt text: providers bill them as input tokens."""
    return "\n".join(json.dumps(p, separators=(",", ":")) for p in parts if p)


def stop_list(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        return (raw,) if raw else None
    if isinstance(raw, list):
        out = tuple(s for s in raw if isinstance(s, str) and s)
        return out or None
    return None


def chat_spec(body: dict[str, Any], msgs: list[Any]) -> OutputSpec | None:
    """The OutputSpec of a chat completion request, or None for plain text."""
    schema, json_object = _format_spec(body.get("response_format"))
    tools: list[ToolSpec] = []
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            tools.append(ToolSpec.of(fn["name"], fn.get("parameters")))
    if not tools and schema is None and not json_object:
        return None
    choice, forced = _choice(body.get("tool_choice"), tools)
    called: set[str] = set()
    for m in msgs:
        if isinstance(m, dict) and m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    called.add(fn["name"])
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    return OutputSpec(tools=tools, choice=choice, forced=forced, after_tool_result=last.get("role") in
                      ("tool", "function"), called=frozenset(called), json_schema=schema,
                      json_object=json_object)


def responses_spec(body: dict[str, Any], items: list[Any], prev_called: frozenset[str]) -> OutputSpec | None:
    """The OutputSpec of a Responses API request (``items`` is the input list, if any)."""
    text = body.get("text")
    schema, json_object = _format_spec(text.get("format") if isinstance(text, dict) else None)
    tools = [ToolSpec.of(t["name"], t.get("parameters")) for t in body.get("tools") or []
             if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)]
    if not tools and schema is None and not json_object:
        return None
    choice, forced = _choice(body.get("tool_choice"), tools)
    called = set(prev_called)
    for it in items:
        if isinstance(it, dict) and it.get("type") == "function_call" and isinstance(it.get("name"), str):
            called.add(it["name"])
    last = items[-1] if items and isinstance(items[-1], dict) else {}
    return OutputSpec(tools=tools, choice=choice, forced=forced,
                      after_tool_result=last.get("type") == "function_call_output",
                      called=frozenset(called), json_schema=schema, json_object=json_object)


class ResponseStore:
    """Responses kept for ``GET /v1/responses/{id}`` and ``previous_response_id`` (bounded, LRU).

    Each entry is the response object and the conversation so far as prompt text, with
    the tool names called in it, so a chained request is planned as if it had sent the
    whole history.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._d: OrderedDict[str, tuple[dict[str, Any], str, frozenset[str]]] = OrderedDict()

    def put(self, rid: str, obj: dict[str, Any], history: str, called: frozenset[str]) -> None:
        self._d[rid] = (obj, history, called)
        self._d.move_to_end(rid)
        while len(self._d) > self.limit:
            self._d.popitem(last=False)

    def get(self, rid: str) -> tuple[dict[str, Any], str, frozenset[str]] | None:
        return self._d.get(rid)
