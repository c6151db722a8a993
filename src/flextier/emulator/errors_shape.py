"""Unknown routes and wrong methods, answered in the dialect of the provider asked.

A client that calls a path the emulator does not serve must get the error its SDK
parses (``openai.NotFoundError``, ``google.genai.errors.ClientError``, botocore's
``ClientError`` with a code), not Starlette's plain-text "Not Found" or a bare 405.
Which provider was asked is read from the path and the headers each SDK sends:

* ``/model/...``, ``/model-invocation-job...`` or a SigV4 ``Authorization`` for
  ``bedrock`` → AWS: ``x-amzn-ErrorType`` + ``{"message": ...}``
  (``UnknownOperationException`` 404; a known path with another method is also an
  unknown operation in REST-JSON services).
* a SigV4 ``Authorization`` for ``s3`` → S3's XML ``<Error>``.
* ``/v1beta/...``, ``/upload/...``, ``/download/...``, ``x-goog-api-key`` or
  ``?key=`` → Google: ``{"error": {"code", "message", "status"}}``.
* ``anthropic-version`` or ``x-api-key`` → Anthropic: ``{"type": "error", "error": {...}}``.
* ``/_emulator/...`` → the control plane's ``{"error": ...}``.
* anything else → OpenAI: ``{"error": {"message", "type", "param", "code"}}``.

The ``*_error`` builders are also what the new routes use for their own validation errors.
"""
from __future__ import annotations

from typing import Any, Mapping
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from .http import json_response

__all__ = ["which_provider", "route_error", "openai_error", "google_error", "aws_error", "anthropic_error",
           "GOOGLE_STATUS"]

GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 405: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

_AWS_NS = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def openai_error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                         status, headers)


def google_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    e: dict[str, Any] = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}
    if details:
        e["details"] = details
    return json_response({"error": e}, status)


def aws_error(status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    h = {"x-amzn-ErrorType": f"{error_type}:{_AWS_NS}",
         "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"}
    if headers:
        h.update(headers)
    return json_response({"message": message}, status, h)


def anthropic_error(status: int, type_: str, message: str) -> Response:
    return json_response({"type": "error", "error": {"type": type_, "message": message},
                          "request_id": "req_emulator"}, status)


def _s3_error(status: int, code: str, message: str, path: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message><Resource>{escape(path)}</Resource>"
            "<RequestId>0000000000000000</RequestId></Error>")
    return Response(body.encode(), status, media_type="application/xml")


def _sigv4_service(auth: str) -> str | None:
    """The service of a SigV4 credential scope (``Credential=AKID/date/region/SERVICE/aws4_request``)."""
    if not auth.startswith("AWS4-HMAC-SHA256"):
        return None
    at = auth.find("Credential=")
    if at < 0:
        return None
    parts = auth[at + 11:].split(",", 1)[0].split("/")
    return parts[3] if len(parts) >= 5 else None


def which_provider(path: str, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """openai | gemini | bedrock | anthropic | s3 | control — who a request was meant for."""
    if path.startswith("/_emulator"):
        return "control"
    service = _sigv4_service(headers.get("authorization", ""))
    if service == "s3":
        return "s3"
    if service is not None or path.startswith(("/model/", "/model-invocation-job", "/async-invoke")):
        return "bedrock"
    if path.startswith(("/v1beta", "/upload/", "/download/")) or "x-goog-api-key" in headers or "key" in query:
        return "gemini"
    if "anthropic-version" in headers or "x-api-key" in headers:
        return "anthropic"
    return "openai"


def route_error(request: Request, status: int) -> Response:
    """The 404 (no such route) or 405 (route exists, not for this method) of the provider asked."""
    path, method = request.url.path, request.method
    prov = which_provider(path, request.headers, request.query_params)
    if prov == "control":
        what = "not found" if status == 404 else f"method {method} not allowed"
        return json_response({"error": f"{path}: {what}"}, status)
    if prov == "bedrock":
        # AWS REST-JSON services answer a path/method pair they do not route as an unknown operation
        return aws_error(404, "UnknownOperationException", f"Unknown operation: {method} {path}")
    if prov == "s3":
        if status == 405:
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed against this "
                             "resource.", path)
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.", path)
    if prov == "gemini":
        if status == 405:
            return google_error(404, f"Method not found: {method} {path}.")
        return google_error(404, f"Method not found: {path}.")
    if prov == "anthropic":
        if status == 405:
            return anthropic_error(405, "invalid_request_error", f"Method {method} not allowed for {path}")
        return anthropic_error(404, "not_found_error", "Not Found")  # what the real API says for a path it lacks
    # OpenAI answers an unrouted method/path pair, wrong method included, with 404 "Invalid URL"
    return openai_error(404, f"Invalid URL ({method} {path})", "invalid_request_error")
