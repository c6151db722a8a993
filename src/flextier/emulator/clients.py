"""Official SDK clients pointed at an emulator, configured the way tests need them.

Pytest-free so that benchmarks, examples and other test suites can reuse them.
Retries are off (``max_retries=0`` / one attempt) so every emulator answer is seen
by the caller exactly once. They are built by each provider's ``make_client`` (the one
place flextier builds that provider's SDK clients), unguarded: the plain SDK client a user
would build.
"""
from __future__ import annotations

from typing import Any

from .server import Emulator

__all__ = ["openai_client", "async_openai_client", "gemini_client", "bedrock_client", "anthropic_client"]


def openai_client(emu: Emulator, **kw: Any) -> Any:
    from ..providers.openai import make_client
    return make_client(emu.openai_base_url, "test", guard=False, **kw)


def async_openai_client(emu: Emulator, **kw: Any) -> Any:
    from ..providers.openai import make_client
    return make_client(emu.openai_base_url, "test", sync=False, guard=False, **kw)


def gemini_client(emu: Emulator, **http: Any) -> Any:
    from ..providers.gemini import make_client
    return make_client(emu.gemini_base_url, "test", guard=False, **http)


def bedrock_client(emu: Emulator, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    from ..providers.bedrock import make_client
    return make_client(emu.bedrock_endpoint_url, region="us-east-1", session=boto3, config=Config(**config),
                       aws_access_key_id="x", aws_secret_access_key="x")


def anthropic_client(emu: Emulator, **kw: Any) -> Any:
    from ..providers.anthropic import make_client
    return make_client(emu.anthropic_base_url, "test", guard=False, **kw)
