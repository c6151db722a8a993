"""A local, flex-faithful emulator of the OpenAI, Gemini, Bedrock and Anthropic APIs.

What moto is to AWS, this is to LLM service tiers: a real HTTP server on loopback
that the official SDKs talk to unchanged, which queues, sheds and preempts flex
work under a seeded daily load curve, and bills every request into a ledger.

    from flextier.emulator import serve
    with serve(profile="weekday", time_scale=600) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key="x")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["serve", "Emulator", "ScaledClock", "Knobs", "KnobError", "PROFILES", "knob_names"]

# Imported on first use: a client that only needs ``flextier.emulator.clock`` (``flextier run
# --base-url`` on a local emulator) should not pay for the server, engine and HTTP stack.
_LAZY = {"ScaledClock": ".clock", "Knobs": ".knobs", "KnobError": ".knobs", "knob_names": ".knobs",
         "PROFILES": ".profiles", "Emulator": ".server", "serve": ".server"}

if TYPE_CHECKING:
    from .clock import ScaledClock
    from .knobs import KnobError, Knobs, knob_names
    from .profiles import PROFILES
    from .server import Emulator, serve


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
