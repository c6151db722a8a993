"""What a request asks the model to produce beyond plain text: JSON for a schema, or a tool call.

Each wire module reads its own dialect (OpenAI ``response_format``/``tools``, Gemini
``responseSchema``/``functionDeclarations``, Anthropic ``tools``/``output_config``,
Bedrock ``toolConfig``/``outputConfig``) into one :class:`OutputSpec`; the engine
then calls :func:`decide` and :func:`tool_call` / :func:`json_text` with the
request's seeded RNG, so the same request gives the same answer on every
provider's wire. The decision rule is the one agents rely on: a forced choice
always calls (a named tool, or — for ``required``/``any`` — a tool not yet called
in the conversation, so an agent loop moves on to its final-answer tool); ``auto``
calls at the ``tool_call_rate`` knob unless the last message is a tool result,
which is answered with text.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from .structured import instance

__all__ = ["ToolSpec", "ToolCall", "OutputSpec", "decide", "tool_call", "json_text", "dumps_compact"]

_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def dumps_compact(value: Any) -> str:
    """JSON text as the providers' models emit it (no spaces, non-ASCII kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ToolSpec:
    """A callable function tool: its name and the JSON Schema of its arguments."""

    name: str
    schema: Any = field(default_factory=lambda: dict(_EMPTY_OBJECT))

    @staticmethod
    def of(name: str, schema: Any) -> "ToolSpec":
        if not isinstance(schema, dict) or not schema:
            schema = dict(_EMPTY_OBJECT)
        return ToolSpec(name, schema)


@dataclass
class ToolCall:
    """One call the emulated model makes; ``id`` is bare hex (each dialect adds its prefix)."""

    id: str
    name: str
    arguments: Any
    cut: str | None = None       # the arguments text when max tokens ended the call mid-way

    @property
    def arguments_json(self) -> str:
        return dumps_compact(self.arguments) if self.cut is None else self.cut

    @property
    def input(self) -> Any:
        """The arguments as an object (Anthropic, Bedrock, Gemini): empty when the call was cut."""
        return self.arguments if self.cut is None else {}


@dataclass
class OutputSpec:
    """Provider-neutral description of the requested output.

    ``choice``: ``auto`` | ``none`` | ``any`` (OpenAI ``required``, Anthropic/Bedrock
    ``any``, Gemini ``ANY``) | ``tool`` (a named tool, ``forced``).
    """

    tools: list[ToolSpec] = field(default_factory=list)
    choice: str = "auto"
    forced: str | None = None
    after_tool_result: bool = False
    called: frozenset[str] = frozenset()
    json_schema: Any = None
    json_object: bool = False
    enum_text: bool = False      # Gemini ``text/x.enum``: the answer is one enum value, bare

    @property
    def wants_json(self) -> bool:
        return self.json_schema is not None or self.json_object

    def unknown_forced(self) -> str | None:
        """The forced tool's name when no tool of that name was sent (the providers answer 400)."""
        if self.choice == "tool" and self.tool(self.forced or "") is None:
            return str(self.forced)
        return None

    def tool(self, name: str) -> ToolSpec | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None


def decide(spec: OutputSpec, rng: random.Random, tool_call_rate: float) -> ToolSpec | None:
    """The tool this answer calls, or None for a text/JSON answer.

    One uniform is always drawn, so the rest of the request's draws do not depend
    on which branch was taken.
    """
    u = rng.random()
    if not spec.tools or spec.choice == "none":
        return None
    if spec.choice == "tool":
        return spec.tool(spec.forced or "") or spec.tools[0]
    if spec.choice == "auto" and (spec.after_tool_result or u >= tool_call_rate):
        return None
    fresh = [t for t in spec.tools if t.name not in spec.called] or spec.tools
    return fresh[rng.randrange(len(fresh))]


def tool_call(tool: ToolSpec, rng: random.Random) -> ToolCall:
    return ToolCall(f"{rng.getrandbits(96):024x}", tool.name, instance(tool.schema, rng))


def json_text(spec: OutputSpec, rng: random.Random, words: list[str]) -> str:
    """The JSON answer: an instance of the schema, or (JSON mode) a small object around ``words``."""
    if spec.json_schema is not None:
        value = instance(spec.json_schema, rng)
        return str(value) if spec.enum_text else dumps_compact(value)
    return dumps_compact({"response": " ".join(words[:40])})
