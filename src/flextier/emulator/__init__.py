"""A local, flex-faithful emulator of the OpenAI, Gemini, Bedrock and Anthropic APIs.

What moto is to AWS, this is to LLM service tiers: a real HTTP server on loopback
that the official SDKs talk to unchanged, which queues, sheds and preempts flex
work under a seeded daily load curve, and bills every request into a ledger.

    from flextier.emulator import serve
    with serve(profile="weekday", time_scale=600) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key="x")
"""
from __future__ import annotations

from .clock import ScaledClock
from .knobs import KnobError, Knobs, knob_names
from .profiles import PROFILES
from .server import Emulator, serve

__all__ = ["serve", "Emulator", "ScaledClock", "Knobs", "KnobError", "PROFILES", "knob_names"]
