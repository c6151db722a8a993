"""AWS Bedrock Converse (boto3): ``serviceTier`` is an *object* in the body.

Wire: ``converse(..., serviceTier={"type": "flex"})`` (botocore 1.43's service model has
the member on Converse and ConverseStream); standard sends no tier. The served tier is
the response's ``serviceTier.type`` (``"default"`` -> ``"standard"``), else the
``x-amzn-bedrock-service-tier`` header. AWS documents no flex-specific error: a shed flex
request gets ``ThrottlingException`` (429) or ``ServiceUnavailableException`` (503), which
on a flex request mean :class:`FlexCapacityUnavailable` (on standard: rate limit / 5xx).

Retries and timeouts: botocore's default ("legacy", 5 attempts, 60 s read timeout)
would re-send a slow flex call up to 4 times. Clients flextier creates use
``Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=<tier timeout> + 30)``
(not ``{"max_attempts": 1}``: botocore counts that as one *retry*, i.e. two attempts)
and ``max_pool_connections`` sized for concurrency, one client per tier because botocore
fixes the read timeout per client. botocore cannot change retries on an existing client,
so a boto3 client handed to :func:`flextier.wrap` / ``get_adapter(client=...)`` is
*re-created* from its region, endpoint, config and credentials object (refreshable
credentials keep refreshing); if that fails its retry handler is unregistered instead,
with a warning.

boto3 is synchronous: ``asend`` runs the call on a dedicated thread pool sized to the
concurrency and bounds it with a timer on the event loop (a call abandoned on timeout keeps
its thread until botocore's read timeout; it is reported as possibly billed). The request is
built and the response read on that worker thread too, so the loop only books the outcome.
Clients come from a botocore session (boto3 itself is not imported: it adds start-up time
and nothing the runtime client needs).

Usage: Bedrock's ``inputTokens`` excludes cache reads/writes, so input = ``inputTokens +
cacheReadInputTokens + cacheWriteInputTokens``, cached = ``cacheReadInputTokens``.
``api_key`` is not used: authenticate with the usual AWS credential chain (or
``AWS_BEARER_TOKEN_BEDROCK``).
"""
from __future__ import annotations

import asyncio
import os
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Mapping

import httpx2
import urllib3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
                                 HTTPClientError, NoCredentialsError, PartialCredentialsError, ReadTimeoutError)

from ..._types import AttemptOutcome, CallRequest
from ...cost import Usage
from ...errors import (BadRequest, EndpointNotFound, FlexCapacityUnavailable, ProviderError, QuotaExhausted,
                      RateLimited, TierNotSupported, Timeout, Transient, Unauthorized)
from ..base import (ITEM_HEADER, TIMEOUT_MARGIN, BaseAdapter, check_usage, item_header_value, malformed_response,
                   retry_after_of, route_error, served_tier, split_system, text_of_content, tls_context)

# botocore takes no per-call headers: the item id rides a thread-local that a
# ``before-sign`` handler (registered on every client the adapter uses) puts on the request.
_ITEM = threading.local()


def _add_item_header(request: Any, **_: Any) -> None:
    v = getattr(_ITEM, "value", None)
    if v:
        request.headers[ITEM_HEADER] = v


def _converse_with_item(client: Any, kw: dict[str, Any], item: str | None) -> Any:
    _ITEM.value = item
    try:
        return client.converse(**kw)
    finally:
        _ITEM.value = None

__all__ = ["BedrockAdapter", "WIRE_TIER", "usage_from_body", "classify_bedrock", "clone_without_retries", "make_client",
           "TIER_HEADER"]

WIRE_TIER = {"flex": {"type": "flex"}, "standard": None, "priority": {"type": "priority"}}
TIER_HEADER = "x-amzn-bedrock-service-tier"
DEFAULT_READ_TIMEOUT = {"flex": 900.0}  # standard: botocore's own default (60 s)
_INFERENCE = {"max_tokens": "maxTokens", "max_completion_tokens": "maxTokens", "temperature": "temperature",
              "top_p": "topP", "stop": "stopSequences"}


def usage_from_body(u: Mapping[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    read = int(u.get("cacheReadInputTokens") or 0)
    write = int(u.get("cacheWriteInputTokens") or 0)
    return Usage(int(u.get("inputTokens") or 0) + read + write, read, int(u.get("outputTokens") or 0), 0)


def served_from(body: Mapping[str, Any], headers: Mapping[str, Any] | None) -> str:
    raw = body.get("serviceTier")
    if raw is None and headers:
        raw = next((v for k, v in headers.items() if k.lower() == TIER_HEADER), None)
    return served_tier(raw)


def text_from_body(body: Mapping[str, Any]) -> str:
    content = ((body.get("output") or {}).get("message") or {}).get("content") or []
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


_AUTH_CODES = frozenset({"UnrecognizedClientException", "AccessDeniedException", "ExpiredTokenException",
                         "InvalidSignatureException", "IncompleteSignatureException"})


def _url_of(exc: ClientError) -> str | None:
    """The operation's URL, when botocore kept it (it does not always)."""
    meta = exc.response.get("ResponseMetadata") or {}
    return meta.get("RequestUrl") or None


def classify_bedrock(exc: BaseException, tier: str) -> ProviderError | None:
    p = "bedrock"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        raw_code = str(err.get("Code") or "")
        code = raw_code[:1].upper() + raw_code[1:]          # stream errors are camelCase
        status = meta.get("HTTPStatusCode")
        msg = str(err.get("Message") or exc)
        kw = dict(status=status, code=code or None, retry_after=retry_after_of(meta.get("HTTPHeaders")),
                  tier=tier, provider=p)
        if code in ("ThrottlingException", "ServiceUnavailableException"):
            if tier == "flex":
                return FlexCapacityUnavailable(msg, **kw)
            return RateLimited(msg, **kw) if code == "ThrottlingException" else Transient(msg, **kw)
        if code == "ServiceQuotaExceededException":
            return QuotaExhausted(msg, **kw)
        if code in ("ModelNotReadyException", "InternalServerException", "ModelErrorException",
                    "ModelStreamErrorException", "ModelTimeoutException"):
            return Transient(msg, **kw)
        low = msg.lower()
        if code == "ValidationException" and tier != "standard" and (
                "service tier" in low or "servicetier" in low or "service_tier" in low or "flex" in low):
            return TierNotSupported(msg, **kw)
        if isinstance(status, int) and (status >= 500 or status in (408, 409)):
            return Transient(msg, **kw)   # 409 ConflictException: as classify_http, retried (the lane looks first)
        if status == 429:
            return RateLimited(msg, **kw)
        if status in (401, 403) or code in _AUTH_CODES:
            return Unauthorized(msg, **kw)
        if code in ("404", "405", "NotFound", "UnknownOperationException") or (
                status in (404, 405) and "model" not in low):
            # no such route (a plain 404 page, an unknown operation): a wrong endpoint URL
            route = route_error(status if status in (404, 405) else 404, None, msg, _url_of(exc), tier=tier,
                                provider=p)
            if route is not None:
                return route
        return BadRequest(msg, **kw)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Unauthorized(f"no usable AWS credentials: {exc}", tier=tier, provider=p)
    if isinstance(exc, ReadTimeoutError):
        return Timeout("the call ran past its timeout", tier=tier, provider=p, possibly_billed=True)
    if isinstance(exc, (ConnectTimeoutError, EndpointConnectionError)):
        return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=p)
    if isinstance(exc, (ConnectionClosedError, HTTPClientError, urllib3.exceptions.HTTPError)):
        return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=p, possibly_billed=True)
    if isinstance(exc, FutureTimeout):
        return Timeout("the call ran past its timeout", tier=tier, provider=p, possibly_billed=True)
    return None


def _no_retry_config(read_timeout: float | None, max_connections: int | None, base: Config | None = None) -> Config:
    # botocore's retries["max_attempts"] counts *retries* (it becomes total_max_attempts =
    # max_attempts + 1, botocore/args.py), so {"max_attempts": 1} would still retry once.
    kw: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
    if max_connections is not None:
        kw["max_pool_connections"] = max_connections
    if read_timeout is not None:
        kw["read_timeout"] = read_timeout
    cfg = Config(**kw)
    return base.merge(cfg) if base is not None else cfg


def make_client(endpoint_url: str | None = None, *, service: str = "bedrock-runtime", region: str | None = None,
                read_timeout: float | None = None, max_connections: int | None = None, config: Config | None = None,
                session: Any = None, what: str | None = "bedrock", **kw: Any) -> Any:
    """The one place flextier builds a botocore client for Bedrock (runtime, control plane, its S3).

    Why one place: botocore retries by default (5 "legacy" attempts), so every client gets
    ``total_max_attempts`` 1 (:func:`_no_retry_config`) over ``config``, and ``read_timeout``
    (callers pass the tier's timeout plus :data:`~.base.TIMEOUT_MARGIN`, since botocore fixes
    it per client) and ``max_pool_connections`` when given. ``session`` is a botocore
    ``Session`` (default: a new one; boto3 itself is not imported, see the module docstring)
    or anything with boto3's ``client()`` (the ``boto3`` module: boto3's default session, as
    the batch backend and the emulator helpers use). The region defaults to ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION`` / us-east-1. While emulating, the built client's endpoint (which
    may come from boto3's environment, e.g. ``AWS_ENDPOINT_URL_S3``) must be loopback
    (:mod:`flextier._loopback`; ``what`` names it; None: the caller has checked).
    """
    cfg = _no_retry_config(read_timeout, max_connections, config)
    session = session if session is not None else botocore.session.Session()
    create = getattr(session, "create_client", None) or session.client
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    client = create(service, region_name=region, endpoint_url=endpoint_url, config=cfg, **kw)
    if what is not None:
        from ..._loopback import check_client
        check_client(client, what)
    return client


def clone_without_retries(client: Any, *, read_timeout: float | None, max_connections: int,
                          session: Any = None) -> Any:
    """A new bedrock-runtime client like ``client`` but with botocore retries off."""
    try:
        session = session or botocore.session.Session()
        creds = client._get_credentials()  # noqa: SLF001 - keeps refreshable credentials refreshing
        if creds is not None:
            session._credentials = creds  # noqa: SLF001
        return make_client(client.meta.endpoint_url, region=client.meta.region_name, read_timeout=read_timeout,
                           max_connections=max_connections, config=client.meta.config, session=session, what=None)
    except Exception as exc:  # noqa: BLE001 - fall back to disabling the handler in place
        warnings.warn(f"could not re-create the boto3 client ({type(exc).__name__}); unregistering its retry "
                      f"handler in place instead (read timeout unchanged)", RuntimeWarning, stacklevel=3)
        name = client.meta.service_model.service_id.hyphenize()
        client.meta.events.unregister(f"needs-retry.{name}", unique_id=f"retry-config-{name}")
        return client


class BedrockTransport:
    """One boto3 client per tier (read timeout differs) and one thread pool for ``asend``."""

    def __init__(self, factory: Callable[[float | None], Any], timeouts: Mapping[str, float],
                 max_connections: int, user_client: Any = None) -> None:
        self._factory = factory
        self._timeouts = {**DEFAULT_READ_TIMEOUT, **dict(timeouts)}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.max_connections = max_connections
        self.user_client = user_client
        #: ``(connections, tls) -> LeanBedrock | None``: the job path's signed-JSON client (:mod:`.lean`), None for
        #: a user's client; one per shard and event loop (see :meth:`lean`)
        self.lean_factory: Callable[[int, Any], Any] | None = None
        self._lean: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()
        self._rr = 0
        self._tls: list[Any] = []

    def lean(self) -> Any:
        """This loop's next :class:`~.lean.LeanBedrock` (pools of SHARD_CONNECTIONS), or None."""
        if self.lean_factory is None:
            return None
        loop = asyncio.get_running_loop()
        shards = self._lean.get(loop)
        if shards is None:
            from ..openai import SHARD_CONNECTIONS
            n = max(1, -(-self.max_connections // SHARD_CONNECTIONS))
            per = -(-self.max_connections // n)
            built = [self.lean_factory(per, self._tls) for _ in range(n)]
            shards = self._lean[loop] = [b for b in built if b is not None]
            if not shards:
                self.lean_factory = None
                return None
        self._rr += 1
        return shards[self._rr % len(shards)]

    def client(self, tier: str) -> Any:
        c = self._clients.get(tier)
        if c is None:
            with self._lock:
                c = self._clients.get(tier)
                if c is None:
                    t = self._timeouts.get(tier)
                    c = self._factory(None if t is None else t + TIMEOUT_MARGIN)
                    try:
                        c.meta.events.register("before-sign.bedrock-runtime.Converse", _add_item_header)
                    except Exception:  # noqa: BLE001 - a stub client without events: no item header
                        pass
                    self._clients[tier] = c
        return c

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.max_connections,
                                                    thread_name_prefix="flextier-bedrock")
        return self._pool

    async def run(self, fn: Callable[[], Any], timeout: float | None) -> Any:
        """``fn()`` on the pool, bounded by ``timeout`` (raises ``asyncio.TimeoutError``).

        A timer handle that cancels the future, not ``asyncio.wait_for`` (which adds a
        waiter future and two callbacks to every call); the abandoned thread finishes alone.
        """
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.pool(), fn)
        if timeout is None:
            return await fut
        expired = False

        def expire() -> None:
            nonlocal expired
            if not fut.done():
                expired = True
                fut.cancel()

        handle = loop.call_later(timeout, expire)
        try:
            return await fut
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if expired and not (task is not None and task.cancelling()):
                raise asyncio.TimeoutError() from None
            raise
        finally:
            handle.cancel()


class BedrockAdapter(BaseAdapter):
    provider = "bedrock"

    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> BedrockTransport:
        if client is not None:
            session = botocore.session.Session()   # one session per transport: models load once

            def factory(rt: float | None) -> Any:
                return clone_without_retries(client, read_timeout=rt, max_connections=max_connections,
                                             session=session)
        else:
            # botocore's session, not boto3's: the same credential chain and client, without
            # importing boto3 (and s3transfer) at start-up
            session = botocore.session.Session()   # one session: service models load once
            # flextier builds the Converse arguments itself (build()), so botocore's client-side
            # check of every call's parameters is pure cost: about 9 % of a Bedrock job's client CPU
            # (issue 19, bench/peers.py --providers bedrock). A bad value the user passed through
            # (additionalModelRequestFields) is the service's ValidationException, a BadRequest.
            lean_cfg = Config(parameter_validation=False)

            def factory(rt: float | None) -> Any:
                return make_client(base_url, read_timeout=rt, max_connections=max_connections, session=session,
                                   config=lean_cfg)
            tr = BedrockTransport(factory, timeouts, max_connections, client)
            creds: list[Any] = []

            def lean(per: int, tls: list[Any]) -> Any:
                from ..openai import _limits, aguarded
                from ..openai.lean import LeanClient
                from .lean import LeanBedrock, status_error

                if not creds:
                    creds.append(session.get_credentials())
                if not LeanBedrock.usable(creds[0]):
                    return None
                bc = tr.client("flex")   # endpoint, region and signing name as botocore resolved them
                if not tls:
                    tls.append(tls_context(bc.meta.endpoint_url, httpx2.create_ssl_context))
                http = LeanClient("", "", transport=aguarded(_limits(per), tls[0]), provider="bedrock",
                                  headers={"User-Agent": "flextier (httpx2)"}, status_error=status_error(classify_bedrock))
                return LeanBedrock(bc, creds[0], http)

            tr.lean_factory = lean
            return tr
        return BedrockTransport(factory, timeouts, max_connections, client)

    def build(self, req: CallRequest, tier: str) -> dict[str, Any]:
        if req.native is not None:
            kw = dict(req.native)
            kw.setdefault("modelId", self.entry.model_id)
        else:
            system, rest = split_system(req.messages or [])
            msgs = []
            for m in rest:
                c = m.get("content")
                blocks = c if isinstance(c, list) and all(isinstance(b, dict) and "type" not in b for b in c) \
                    else [{"text": text_of_content(c)}]
                msgs.append({"role": "assistant" if m.get("role") == "assistant" else "user", "content": blocks})
            kw = {"modelId": self.entry.model_id, "messages": msgs}
            if system:
                kw["system"] = [{"text": system}]
            inf: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for k, v in req.params.items():
                if k in _INFERENCE:
                    inf[_INFERENCE[k]] = [v] if k == "stop" and isinstance(v, str) else v
                else:
                    extra[k] = v
            if inf:
                kw["inferenceConfig"] = inf
            if extra:
                kw["additionalModelRequestFields"] = extra
        kw.pop("serviceTier", None)
        wire = WIRE_TIER[tier]
        if wire:
            kw["serviceTier"] = dict(wire)
        return kw

    def outcome(self, resp: dict[str, Any], tier: str = "standard") -> AttemptOutcome:
        headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        body = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
        msg = (body.get("output") or {}).get("message") if isinstance(body.get("output"), dict) else None
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
            raise malformed_response("no output.message.content", tier=tier, provider=self.provider)
        check_usage(body.get("usage"), ("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens",
                                        "cacheWriteInputTokens"), tier=tier, provider=self.provider)
        return AttemptOutcome(body=body, text=text_from_body(body), served_tier=served_from(body, headers),
                              usage=usage_from_body(body.get("usage")), headers=dict(headers), raw=None)

    def _send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        kw = self.build(req, tier)
        client = self.transport.client(tier)
        item = item_header_value(req.custom_id)
        if timeout is None:
            return self.outcome(_converse_with_item(client, kw, item), tier)
        # botocore fixes the read timeout per client; bound the whole call on the pool instead
        return self.outcome(self.transport.pool().submit(_converse_with_item, client, kw, item).result(timeout),
                            tier)

    async def _asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        lean = self.transport.lean()
        if lean is not None:
            prep = lean.prepare(self.build(req, tier), item_header_value(req.custom_id))
            if prep is not None:
                try:
                    resp = await lean.converse(*prep, tier=tier, timeout=timeout)
                except ValueError as exc:   # a 2xx that is not a JSON object
                    raise malformed_response("not JSON", tier=tier, provider=self.provider) from exc
                return self.outcome(resp, tier)
        client = self.transport.client(tier)

        # Build, call and read the response all on the worker thread: the event loop only
        # receives the finished outcome, so it spends no time per call on botocore's dicts.
        def call() -> AttemptOutcome:
            return self.outcome(_converse_with_item(client, self.build(req, tier), item_header_value(req.custom_id)),
                                tier)

        return await self.transport.run(call, timeout)

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        err = classify_bedrock(exc, tier)
        if isinstance(err, EndpointNotFound) and err.url is None:
            # botocore's error does not carry the URL; the client's endpoint names what is wrong
            try:
                url = self.transport.client(tier).meta.endpoint_url
            except Exception:  # noqa: BLE001 - naming the URL is a courtesy, not a requirement
                url = None
            if url:
                redone = route_error(err.status, None, "Not Found" if err.status == 404 else "Method Not Allowed",
                                     url, tier=tier, provider=self.provider)
                err = redone or err
        return err
