"""The job path's OpenAI HTTP client: JSON over one httpx pool, without the SDK.

Why: a job posts prebuilt JSON bodies and reads the JSON back (see the package docstring);
the SDK adds nothing to that but cost. Importing ``openai`` takes 0.35-0.5 s (its ``types``
package is most of it), which alone broke the 0.5 s budget from process start to the first
request (issue 19, ``bench/startup.py``), and its ``post`` builds options, headers and a
retry loop per request on the hot path. This client sends what the SDK would send for the
same call (``Authorization: Bearer``, JSON, the SDK's default 600 s / 5 s connect timeout,
``OPENAI_BASE_URL`` / ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID`` from the environment,
redirects followed) through the same guarded transport, and classifies failures exactly as
:func:`flextier.providers.openai._classify_stainless` classifies the SDK's exceptions (the
status branch is shared: :func:`status_error`). A user's own client (``client=``), the sync
path and the batch backend still go through the SDK.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import httpx2

from ...errors import ProviderError, Timeout, Transient
from ..base import classify_http, error_fields, request_url, retry_after_of, route_error

try:  # orjson encodes a request body ~5x faster than json.dumps; json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None

__all__ = ["LeanClient", "StoredLookup", "dumps", "loads", "connection_error", "sdk_body", "status_error"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Metadata keys flextier adds to a stored chat completion (OpenAI allows 16 pairs, keys <= 64
#: characters, values <= 512): see ``tag_for_resume`` in this package.
META_JOB, META_ITEM = "flextier_job", "flextier_item"
MAX_META_VALUE = 512
#: The SDK's default timeout (openai ``DEFAULT_TIMEOUT``): 600 s overall, 5 s to connect.
DEFAULT_TIMEOUT = httpx2.Timeout(600.0, connect=5.0)
_OPT_ORJSON = 0 if _orjson is None else _orjson.OPT_NON_STR_KEYS


def dumps(body: Any) -> bytes:
    """JSON bytes of a request body (orjson; json for what orjson refuses, e.g. ints past 64 bits)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(body, option=_OPT_ORJSON)
        except TypeError:
            pass
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """Parse a response body; raises ``json.JSONDecodeError`` (a ValueError) either way."""
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # let json raise its own error type, which the adapter classifies
    return json.loads(data)


def sdk_body(response: httpx2.Response) -> tuple[Any, str]:
    """(body, message) of an error response as the Stainless SDKs build them.

    The SDK parses the text as JSON (else keeps the text), names it ``"Error code: N - body"``
    and, for OpenAI, hands the exception ``body["error"]`` when there is one.
    """
    text = response.text.strip()
    body: Any = text
    try:
        body = json.loads(text)
        msg = f"Error code: {response.status_code} - {body}"
    except ValueError:
        msg = text or f"Error code: {response.status_code}"
    if isinstance(body, Mapping):
        body = body.get("error", body)
    return body, msg


def connection_error(exc: BaseException, tier: str, provider: str) -> ProviderError:
    """What the SDK's APITimeoutError / APIConnectionError classify as, from the httpx exception."""
    if isinstance(exc, httpx2.TimeoutException):
        if isinstance(exc, (httpx2.ConnectTimeout, httpx2.PoolTimeout)):
            return Transient("connect timeout", tier=tier, provider=provider)
        return Timeout("the call ran past its timeout", tier=tier, provider=provider, possibly_billed=True)
    sent = isinstance(exc, (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteError))
    return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=provider, possibly_billed=sent)


def status_error(status: int, body: Any, sdk_message: str, response: Any, *, tier: str,
                 provider: str) -> ProviderError:
    """An HTTP error status -> taxonomy, for the SDK's APIStatusError and :class:`.wire.LeanClient` alike.

    ``body`` is what the SDK hands its exception (the inner ``error`` object when there is one),
    ``sdk_message`` its ``"Error code: N - ..."`` text.
    """
    code, err_type, msg = error_fields(body)
    route = route_error(status, body, msg, request_url(response), tier=tier, provider=provider)
    if route is not None:
        return route
    if status == 200:  # an in-stream "error" event (Anthropic raises it with the stream's 200)
        status = None  # type: ignore[assignment]
    return classify_http(status=status, code=code, err_type=err_type, message=msg or sdk_message,
                         tier=tier, provider=provider, retry_after=retry_after_of(response.headers))


class LeanClient:
    """POST JSON to ``base_url + path`` on one guarded async httpx pool; errors are taxonomy errors.

    Shared by the job paths that send prebuilt JSON without their SDK (OpenAI here, Gemini in
    :mod:`flextier.providers.gemini`): ``headers`` replaces the OpenAI defaults, and
    ``status_error(response, tier)`` classifies an HTTP error the way that provider's SDK
    exception would be (default: :func:`status_error`, the Stainless SDKs' shape). A
    ``base_url`` of ``""`` means ``path`` is a whole URL.
    """

    def __init__(self, base_url: str | None, api_key: str, *, transport: Any, provider: str = "openai",
                 headers: Mapping[str, str] | None = None,
                 status_error: Callable[[httpx2.Response, str], ProviderError] | None = None) -> None:
        if base_url == "":
            self.base_url = ""
        else:
            self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key
        self.provider = provider
        self._status_error = status_error
        if headers is None:
            headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                       "Accept": "application/json", "User-Agent": "flextier (httpx2)"}
            org, project = os.environ.get("OPENAI_ORG_ID"), os.environ.get("OPENAI_PROJECT_ID")
            if org:
                headers["OpenAI-Organization"] = org
            if project:
                headers["OpenAI-Project"] = project
        self._http = httpx2.AsyncClient(transport=transport, headers=dict(headers), timeout=DEFAULT_TIMEOUT,
                                        follow_redirects=True)

    async def request(self, method: str, path: str, *, body: Any = None, tier: str = "", timeout: float | None = None,
                      headers: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
                      content: bytes | None = None) -> httpx2.Response:
        """One exchange; a 2xx response is returned (body read), anything else raises ProviderError.
        ``content``: the body's bytes as they are (a signed request), instead of ``body`` as JSON."""
        kw: dict[str, Any] = {}
        if timeout is not None:
            kw["timeout"] = timeout
        if content is None and body is not None:
            content = dumps(body)
        try:
            resp = await self._http.request(method, self.base_url + path, content=content,
                                            headers=headers, params=params, **kw)
        except ProviderError:
            raise
        except Exception as exc:  # what the SDK wraps as APIConnectionError / APITimeoutError
            raise connection_error(exc, tier, self.provider) from exc
        if resp.status_code >= 400 or resp.status_code < 200:
            if self._status_error is not None:
                raise self._status_error(resp, tier)
            err_body, msg = sdk_body(resp)
            raise status_error(resp.status_code, err_body, msg, resp, tier=tier, provider=self.provider)
        return resp

    async def await_response(self, response_id: str, *, tier: str, timeout: float | None,
                             first: float = 0.05, most: float = 1.0) -> Any:
        """Poll ``GET /responses/{id}`` (a background response) until it is no longer queued or
        in progress; returns its JSON.

        The request was accepted, so it may be billed whatever happens now: a poll that fails is
        tried again (up to 5 times in a row, backing off), and then the attempt fails as a
        possibly billed :class:`Transient`, never as one the provider surely did not charge.
        """
        import asyncio

        wait, fails = first, 0
        while True:
            try:
                data = loads((await self.request("GET", f"/responses/{response_id}", tier=tier,
                                                 timeout=timeout)).content)
                fails = 0
            except (ProviderError, ValueError) as exc:
                fails += 1
                if fails >= 5:
                    raise Transient(f"background response {response_id[:64]} could not be read back: {exc}",
                                    tier=tier, provider=self.provider, possibly_billed=True) from exc
                data = None
            if isinstance(data, dict) and data.get("status") not in ("queued", "in_progress"):
                return data
            await asyncio.sleep(wait)
            wait = min(most, wait * 1.5)

    async def post(self, path: str, body: Any, *, tier: str, timeout: float | None,
                   headers: Mapping[str, str] | None = None) -> httpx2.Response:
        return await self.request("POST", path, body=body, tier=tier, timeout=timeout, headers=headers)

    async def aclose(self) -> None:
        await self._http.aclose()


class StoredLookup:
    """Reads back stored chat completions by metadata, on resume (sync: it runs before the job's loop).

    ``GET /chat/completions?metadata[flextier_job]=JOB&metadata[flextier_item]=ID&model=M``: the
    completions OpenAI kept for that item (``store: true``), oldest first. Any failure (no such
    route, an error, a timeout) finds nothing for that item: it is sent again, as without a
    store, so a lookup can cost time but never an answer. Up to 8 lookups run at once.
    """

    def __init__(self, base_url: str | None, api_key: str, *, transport: Any, timeout: float = 30.0) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._key = api_key
        self._transport = transport
        self.timeout = timeout

    def find(self, job: str, custom_ids: list[str], model: str,
             remote: Mapping[str, list[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Stored answers per item: by response id for the items in ``remote`` (Responses
        background mode: ``GET /responses/{id}``, waiting for those still running until
        :attr:`timeout` seconds after the lookup began), by metadata (stored chat completions)
        for the rest."""
        from concurrent.futures import ThreadPoolExecutor

        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json",
                   "User-Agent": "flextier (httpx2)"}
        out: dict[str, list[dict[str, Any]]] = {}
        with httpx2.Client(transport=self._transport(), headers=headers, timeout=self.timeout,
                           follow_redirects=True) as http:
            def one(cid: str) -> tuple[str, list[dict[str, Any]]]:
                params = {f"metadata[{META_JOB}]": job, f"metadata[{META_ITEM}]": cid, "model": model,
                          "limit": "100", "order": "asc"}
                try:
                    r = http.get(self.base_url + "/chat/completions", params=params)
                    if r.status_code != 200:
                        return cid, []
                    data = loads(r.content)
                except Exception:
                    return cid, []
                rows = data.get("data") if isinstance(data, dict) else None
                meta_ok = [d for d in rows or [] if isinstance(d, dict) and
                           (d.get("metadata") or {}).get(META_ITEM, cid) == cid]
                return cid, meta_ok

            import time

            end = time.monotonic() + self.timeout   # one bound for the whole lookup, not per response

            def by_id(cid: str) -> tuple[str, list[dict[str, Any]]]:
                got = []
                for rid in (remote or {}).get(cid) or ():
                    wait = 0.05
                    while True:
                        try:
                            r = http.get(f"{self.base_url}/responses/{rid}")
                            data = loads(r.content) if r.status_code == 200 else None
                        except Exception:
                            data = None
                        status = data.get("status") if isinstance(data, dict) else None
                        if status in ("completed", "incomplete"):
                            got.append(data)
                            break
                        if status not in ("queued", "in_progress") or time.monotonic() > end:
                            break   # failed, cancelled, gone, or still running: resend it
                        time.sleep(wait)
                        wait = min(1.0, wait * 1.5)
                return cid, got

            with ThreadPoolExecutor(8) as pool:
                todo = [c for c in custom_ids if not (remote and c in remote)]
                for cid, found in [*pool.map(by_id, [c for c in custom_ids if remote and c in remote]),
                                   *pool.map(one, todo)]:
                    if found:
                        out[cid] = found
        return out
