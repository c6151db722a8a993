"""The job path's async Bedrock client: Converse as signed JSON over httpx, without botocore's call path.

Why (issue 19): botocore's per-call pipeline (parameter checks, a dozen events, the endpoint
ruleset, its user-agent string rebuilt per request, urllib3 writing the head and the body in
two sends, on a worker thread per request) made a Bedrock job cost 1.3x an OpenAI job's client
CPU per request. A job's Converse call is JSON in and JSON out, so :class:`LeanBedrock` sends
what botocore sends -- ``POST {endpoint}/model/{modelId}/converse`` (the id percent-encoded as
botocore encodes a URI label), the arguments but ``modelId`` as the JSON body, ``Content-Type:
application/json`` and ``x-flextier-item``, signed with botocore's own ``SigV4Auth`` (service
``bedrock``, the client's region, the session's credential chain, refreshed per request) -- over
the shared :class:`~flextier.providers.openai.lean.LeanClient` on the event loop. An error
answer is parsed as botocore's rest-json parser does (``x-amzn-ErrorType``, else ``__type`` /
``code``; ``message``) into a ``ClientError`` for :func:`~flextier.providers.bedrock.classify_bedrock`,
the one decision table. A request with binary content (``bytes``), bearer-token auth
(``AWS_BEARER_TOKEN_BEDROCK``), a user's client and the sync path stay on botocore.
"""
from __future__ import annotations

import http.client
import os
from typing import Any, Mapping
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from ...errors import ProviderError

__all__ = ["LeanBedrock", "client_error"]


def client_error(status: int, headers: Mapping[str, str], content: bytes, url: str) -> ClientError:
    """The ``ClientError`` botocore's rest-json parser would raise for this error answer."""
    import json

    h = {k.lower(): v for k, v in headers.items()}
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):  # not JSON (a proxy's page): botocore's generic parse
        code, msg = str(status), http.client.responses.get(status, "")
    else:
        msg = str(body.get("message", body.get("Message", "")))
        code = h.get("x-amzn-errortype", "").split(":")[0] or str(body.get("code", body.get("Code", "")) or "") \
            or str(body.get("__type", "")).split("#")[-1]
    meta = {"HTTPStatusCode": status, "HTTPHeaders": h, "RequestId": h.get("x-amzn-requestid", ""),
            "RequestUrl": url}
    return ClientError({"Error": {"Code": code, "Message": msg}, "ResponseMetadata": meta}, "Converse")


class LeanBedrock:
    """Converse requests signed like botocore's, posted with a :class:`LeanClient` (one per shard)."""

    def __init__(self, botocore_client: Any, credentials: Any, http: Any) -> None:
        meta = botocore_client.meta
        self.endpoint = meta.endpoint_url.rstrip("/")
        self.region = meta.region_name
        self.signing_name = meta.service_model.signing_name or "bedrock"
        self.credentials = credentials
        self.http = http

    @staticmethod
    def usable(credentials: Any) -> bool:
        return credentials is not None and not os.environ.get("AWS_BEARER_TOKEN_BEDROCK")

    def prepare(self, kw: Mapping[str, Any], item: str | None) -> tuple[str, bytes, dict[str, str]] | None:
        """(URL, body bytes, signed headers) for ``converse(**kw)``; None when botocore must send it."""
        from ..openai.lean import dumps

        body = {k: v for k, v in kw.items() if k != "modelId"}
        try:
            data = dumps(body)
        except (TypeError, ValueError):  # bytes (image/document content): botocore base64-encodes blobs
            return None
        if b'"bytes":' in data:   # a blob member given as text: botocore's to encode, not ours
            return None
        url = f"{self.endpoint}/model/{quote(str(kw['modelId']), safe='')}/converse"
        headers = {"Content-Type": "application/json"}
        if item:
            from ..base import ITEM_HEADER
            headers[ITEM_HEADER] = item
        req = AWSRequest(method="POST", url=url, data=data, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), self.signing_name, self.region).add_auth(req)
        return url, data, dict(req.headers.items())

    async def converse(self, url: str, data: bytes, headers: dict[str, str], *, tier: str,
                       timeout: float | None) -> dict[str, Any]:
        """The Converse response as botocore returns it (body members + ``ResponseMetadata``)."""
        from ..openai.lean import loads

        resp = await self.http.request("POST", url, content=data, headers=headers, tier=tier, timeout=timeout)
        out = loads(resp.content)
        if not isinstance(out, dict):
            raise ValueError("not an object")
        out["ResponseMetadata"] = {"HTTPStatusCode": resp.status_code,
                                   "HTTPHeaders": {k.lower(): v for k, v in resp.headers.items()}}
        return out


def status_error(classify: Any) -> Any:
    """A :class:`LeanClient` ``status_error`` hook: the error answer as botocore's ClientError, classified."""
    def hook(response: Any, tier: str) -> ProviderError:
        err = classify(client_error(response.status_code, response.headers, response.content,
                                    str(response.request.url)), tier)
        assert err is not None  # a ClientError is always classified
        return err

    return hook
