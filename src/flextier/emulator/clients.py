"""Official SDK clients pointed at an emulator, configured the way tests need them.

Pytest-free so that benchmarks, examples and other test suites can reuse them.
Retries are off (``max_retries=0`` / one attempt) so every emulator answer is seen
by the caller exactly once.
"""
from __future__ import annotations

from typing import Any

from .server import Emulator

__all__ = ["openai_client", "async_openai_client", "gemini_client", "bedrock_client", "anthropic_client"]


def openai_client(emu: Emulator, **kw: Any) -> Any:
    import openai
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="test", max_retries=0, **kw)


def async_openai_client(emu: Emulator, **kw: Any) -> Any:
    import openai
    return openai.AsyncOpenAI(base_url=emu.openai_base_url, api_key="test", max_retries=0, **kw)


def gemini_client(emu: Emulator, **http: Any) -> Any:
    from google import genai
    from google.genai import types
    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=emu.gemini_base_url, **http))


def bedrock_client(emu: Emulator, **config: Any) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("bedrock-runtime", endpoint_url=emu.bedrock_endpoint_url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config))


def anthropic_client(emu: Emulator, **kw: Any) -> Any:
    import anthropic
    return anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="test", max_retries=0, **kw)
