"""Offline means offline: while emulating, every client flextier builds must point at loopback.

Why a guard and not only the right URLs: the endpoints a client ends up with come from many
places (flags, the SDK's defaults, boto3's environment and config files such as
``AWS_ENDPOINT_URL_S3``). Before this guard, ``flextier run --emulate weekday --tier batch`` on
Bedrock built its S3 client from boto3's defaults and tried ``https://BUCKET.s3.amazonaws.com``
. Now, while an emulator runs in this process (``flextier run --emulate``,
:func:`flextier.emulator.serve`) or ``--base-url`` names a flextier emulator, each place that
builds an SDK client (the provider adapters, the batch backends, the emulator's own S3 client)
calls :func:`check_endpoint` first, and a non-loopback endpoint is refused with one line
(:class:`OfflineViolation`, a :class:`~flextier.errors.UserInputError`: exit 2) before
anything is sent.

"Loopback" is ``localhost``, ``127.0.0.0/8`` and ``::1`` (any port); no name is resolved.
A client with no endpoint of its own (``None``: the SDK's public default) is never loopback.
"""
from __future__ import annotations

import contextlib
import ipaddress
import threading
from typing import Any, Iterator
from urllib.parse import urlsplit

from .errors import OfflineViolation  # re-exported from its home

__all__ = ["OfflineViolation", "is_loopback_host", "is_loopback_url", "offline", "offline_active",
           "check_endpoint", "client_endpoint", "check_client"]

#: how each client is named in the refusal
CLIENT_NAMES = {"openai": "OpenAI", "gemini": "Gemini", "bedrock": "Bedrock runtime", "anthropic": "Anthropic",
                "deepseek": "DeepSeek"}

_lock = threading.Lock()
_depth = 0
_why: list[str] = []


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").split("%", 1)[0].rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    if not url:
        return False
    try:
        return is_loopback_host(urlsplit(str(url) if "//" in str(url) else f"//{url}").hostname)
    except ValueError:
        return False


@contextlib.contextmanager
def offline(why: str = "--emulate") -> Iterator[None]:
    """While inside, :func:`check_endpoint` refuses every non-loopback endpoint. Nests; process-wide
    (clients are built on worker threads too)."""
    global _depth
    with _lock:
        _depth += 1
        _why.append(why)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            _why.remove(why)


def offline_active() -> bool:
    return _depth > 0


def check_endpoint(url: str | None, what: str, *, always: bool = False) -> None:
    """Refuse ``url`` for the client ``what`` if it is not loopback while offline (or ``always``)."""
    if not (always or _depth > 0) or is_loopback_url(url):
        return
    why = _why[-1] if _why else "the emulator"
    what = CLIENT_NAMES.get(what, what)
    shown = url or "the provider's public endpoint (no endpoint given)"
    raise OfflineViolation(f"refusing to build the {what} client for {shown}: while emulating every client must "
                           f"point at the emulator on loopback; nothing was sent", field=why)


def client_endpoint(client: Any) -> str | None:
    """The endpoint an SDK client object talks to (OpenAI/Anthropic, boto3, google-genai), if known."""
    meta = getattr(client, "meta", None)
    if meta is not None and getattr(meta, "endpoint_url", None):
        return str(meta.endpoint_url)                                  # boto3 / botocore
    base = getattr(client, "base_url", None)
    if base:
        return str(base)                                               # openai / anthropic
    api = getattr(client, "_api_client", None) or getattr(getattr(client, "_client", None), "_api_client", None)
    opts = getattr(api, "_http_options", None)
    if opts is not None and getattr(opts, "base_url", None):
        return str(opts.base_url)                                      # google-genai (Client and .aio)
    return None


def check_client(client: Any, what: str) -> None:
    """:func:`check_endpoint` on an already built SDK client object (one handed to flextier)."""
    if _depth > 0:
        check_endpoint(client_endpoint(client), what)
