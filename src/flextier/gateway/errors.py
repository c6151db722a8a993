"""Errors as each provider's own SDK expects them, so a client behind the gateway reacts as usual.

Why per provider: the OpenAI SDK reads ``{"error": {"message", "type", "code", "param"}}``,
google-genai ``{"error": {"code", "message", "status"}}``, Anthropic's SDK ``{"type": "error",
"error": {"type", "message"}}``. A gateway error in the wrong shape becomes an opaque
"unknown error" in the caller's code. When the policy gives up, the caller gets the last
provider error's status and meaning (the taxonomy class from :mod:`flextier.errors`) in its
own provider's shape; gateway refusals (bad key, budget, body too large, model not allowed)
use the same shapes. ``x-should-retry: false`` tells the Stainless SDKs (OpenAI, Anthropic)
not to retry what flextier already retried.

Messages are scrubbed of every configured secret before they leave (:func:`scrub`).
"""
from __future__ import annotations

import json
from typing import Iterable

from starlette.responses import Response

from ..errors import (BadRequest, EndpointNotFound, FlexCapacityUnavailable, Overloaded, ProviderError,
                      QuotaExhausted, RateLimited, TierNotSupported, Timeout, Transient, Unauthorized)

__all__ = ["error_response", "provider_error_response", "scrub", "status_of"]

_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}
_ANTHROPIC_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                   503: "api_error", 504: "api_error", 529: "overloaded_error"}
_OPENAI_TYPE = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_exceeded",
                500: "server_error", 503: "server_error", 504: "server_error"}


def scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    return text


def status_of(err: ProviderError) -> int:
    """The HTTP status to answer with: the provider's own when it gave one, else the class's."""
    st = getattr(err, "status", None)
    if isinstance(st, int) and 400 <= st < 600:
        return st
    for cls, code in ((Unauthorized, 401), (EndpointNotFound, 404), (TierNotSupported, 400), (BadRequest, 400),
                      (QuotaExhausted, 429), (RateLimited, 429), (FlexCapacityUnavailable, 503),
                      (Overloaded, 529), (Timeout, 504), (Transient, 502)):
        if isinstance(err, cls):
            return code
    return 502


def error_response(provider: str, status: int, message: str, *, code: str | None = None,
                   err_type: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """A JSON error in ``provider``'s shape."""
    if provider == "gemini":
        body = {"error": {"code": status, "message": message, "status": err_type or _GEMINI_STATUS.get(status,
                                                                                                    "UNKNOWN")}}
    elif provider == "anthropic":
        body = {"type": "error", "error": {"type": err_type or _ANTHROPIC_TYPE.get(status, "api_error"),
                                           "message": message}}
    else:
        body = {"error": {"message": message, "type": err_type or _OPENAI_TYPE.get(status, "server_error"),
                          "param": None, "code": code}}
    h = {"x-should-retry": "false"}
    h.update(headers or {})
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=h)


def provider_error_response(provider: str, err: ProviderError, secrets: Iterable[str],
                            headers: dict[str, str] | None = None) -> Response:
    """What the policy gave up with, in the provider's shape, with flextier's headers."""
    status = status_of(err)
    msg = scrub(str(getattr(err, "message", None) or err), secrets)
    h = dict(headers or {})
    ra = getattr(err, "retry_after", None)
    if ra is not None and status in (429, 503, 529):
        h["retry-after"] = str(max(1, int(round(ra))))
    return error_response(provider, status, msg, code=getattr(err, "code", None), headers=h,
                          err_type=None if provider != "openai" else _openai_type(err, status))


def _openai_type(err: ProviderError, status: int) -> str:
    if isinstance(err, QuotaExhausted):
        return "insufficient_quota"
    if isinstance(err, FlexCapacityUnavailable):
        return "resource_unavailable"
    return _OPENAI_TYPE.get(status, "server_error")
