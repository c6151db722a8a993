"""Flex on every call path: the policy engine at the HTTP transport.

Why here: the SDKs' own helpers (``parse``, ``stream``, ``with_raw_response``, chats) and the
libraries built on them (LangChain, pydantic-ai, instructor) reach the network by many
paths, but every one of them meets at the HTTP client's transport (httpx's
``BaseTransport``/``AsyncBaseTransport``, the seam httpx is designed around). So flextier sits
there: :func:`transport` / :func:`async_transport` wrap the transport an SDK client would use
and

* let anything that is not a generation request through untouched (files, batches, models,
  embeddings);
* for a generation request (recognised by the provider's dialect, ``providers/<p>/wire.py``),
  run the ONE policy loop (:func:`flextier.policy.fallback.call_with_policy`, whose every
  decision is :func:`flextier.policy.rules.decide`): write the attempt's tier into the body,
  send, classify a failure, back off, fall back to standard, honour the deadline;
* read the served tier and usage from the response (streams too: watched as they pass, with
  fallback only before the first content token), price them with :mod:`flextier.cost`,
  and hand the SDK an ordinary HTTP response carrying ``x-flextier-*`` headers.

Bedrock (botocore, not httpx) gets the same engine through botocore's ``before-call`` event
(:mod:`flextier.providers.bedrock.hooks`).

What a call cost is available three ways: the response headers (``x-flextier-served-tier``,
``-attempts``, ``-cost-usd``, ``-standard-cost-usd``; empty when unknown), :func:`info` on
whatever the SDK returned, and :func:`totals` for the whole process. See docs/providers.md
("Wrapping at the transport") and docs/errors.md.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from ._types import AttemptOutcome, CallResult
from .catalog import Catalog, ModelEntry, default_catalog
from .cost import Usage, price_usage
from .errors import ProviderError, Timeout, Transient
from .policy.fallback import Policy, acall_with_policy, call_with_policy
from . import guard
from ._loopback import is_loopback_host, is_loopback_url, offline_active

if TYPE_CHECKING:  # the dialects import this module; it needs their types only for hints
    from .providers.wire import Call, Dialect, StreamObserver

__all__ = ["transport", "async_transport", "info", "totals", "Tally", "lookup", "Recorder", "HEADERS",
           "cut_stream", "finalize_stream", "flextier_headers", "remember", "POLICY_EXTENSION",
           "CALL_EXTENSION"]

H_TIER = "x-flextier-served-tier"
H_ATTEMPTS = "x-flextier-attempts"
H_COST = "x-flextier-cost-usd"
H_STD = "x-flextier-standard-cost-usd"
H_CALL = "x-flextier-call"
#: request extension holding a per-request :class:`Policy` (see :meth:`_Engine.setup`)
POLICY_EXTENSION = "flextier.policy"
#: request extension holding ``(dialect, call)`` when the caller already recognised the request
#: with one of this engine's dialects (the gateway does, to admit it): not parsed a second time
CALL_EXTENSION = "flextier.call"
HEADERS = (H_TIER, H_ATTEMPTS, H_COST, H_STD, H_CALL)

_DROP_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_DROP_RAW = frozenset(k.encode() for k in _DROP_HEADERS)


# -- models -------------------------------------------------------------------------------------

def _synthetic_entry(provider: str, model: str) -> ModelEntry:
    """A model the catalog does not know: try flex (the provider decides), price unknown."""
    return ModelEntry(name=f"{provider}/{model}", provider=provider, model_id=model, aliases=(),
                      supports_flex=provider != "anthropic", supports_batch=False,
                      prices={"standard": None}, cache_discount_stacks={}, source="unknown", source_date="")


def lookup(catalog: Catalog, provider: str, model: str | None) -> ModelEntry:
    """The catalog entry for a wire model id (unknown models pass, priced None)."""
    if not model:
        return _synthetic_entry(provider, "unknown")
    e = catalog.find_wire(provider, model)
    if e is None:
        try:
            e = catalog.resolve(f"{provider}/{model}")
        except Exception:  # noqa: BLE001 - unknown models are allowed through
            e = None
    return e or _synthetic_entry(provider, model)


# -- what happened: info() and totals() ------------------------------------------------------------

class _LRU:
    """A bounded map (provider ids and call serials are strings: no weak references)."""

    def __init__(self, size: int = 8192) -> None:
        self._d: OrderedDict[str, CallResult] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, key: str, value: CallResult) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self._size:
                self._d.popitem(last=False)

    def get(self, key: Any) -> CallResult | None:
        if not isinstance(key, str):
            return None
        with self._lock:
            return self._d.get(key)


_BY_CALL = _LRU()
_BY_ID = _LRU()
_serial = itertools.count(1)


def remember(result: CallResult, rid: str | None) -> str:
    """Register ``result`` under a new call serial (and the provider's response id); return the serial."""
    key = f"{next(_serial)}"
    _BY_CALL.put(key, result)
    if rid:
        _BY_ID.put(rid, result)
    return key


def _from_headers(h: Any) -> CallResult | None:
    try:
        v = h.get(H_CALL)
        if v is None and isinstance(h, dict):
            v = next((val for k, val in h.items() if str(k).lower() == H_CALL), None)
    except Exception:  # noqa: BLE001 - not a mapping
        return None
    return _BY_CALL.get(v)


_ATTRS = ("headers", "response", "_response", "http_response", "sdk_http_response", "_raw_stream",
          "raw_response", "_raw_response", "_stream", "ResponseMetadata", "HTTPHeaders", "stream")
_ID_ATTRS = ("id", "response_id", "_request_id")


def info(obj: Any) -> CallResult | None:
    """What happened behind whatever an SDK returned through flextier (a parsed model, a raw
    response, a stream or stream manager, a Bedrock dict), or a CallResult as is; None for
    objects flextier did not see. Streams: usage and cost are None until their final usage."""
    if obj is None:
        return None
    if isinstance(obj, CallResult):
        return obj
    if hasattr(type(obj), "_flextier_result"):   # an object that knows its call (complete's streams)
        return obj._flextier_result
    h = getattr(obj, "headers", None)   # the common case (an httpx response, the gateway's): one lookup
    if h is not None and hasattr(h, "get"):
        r = _from_headers(h)
        if r is not None:
            return r
    seen: set[int] = set()
    todo = [obj]
    for _depth in range(4):
        nxt = []
        for o in todo:
            if o is None or id(o) in seen or isinstance(o, (str, bytes, int, float)):
                continue
            seen.add(id(o))
            r = _from_headers(o) if hasattr(o, "get") else None
            if r is not None:
                return r
            for a in _ATTRS:
                try:
                    v = o.get(a) if isinstance(o, dict) else getattr(o, a, None)
                except Exception:  # noqa: BLE001 - properties that raise
                    v = None
                if v is not None:
                    nxt.append(v)
            for a in _ID_ATTRS:
                try:
                    r = _BY_ID.get(o.get(a) if isinstance(o, dict) else getattr(o, a, None))
                except Exception:  # noqa: BLE001
                    r = None
                if r is not None:
                    return r
            if isinstance(o, dict):
                r = _BY_ID.get((o.get("ResponseMetadata") or {}).get("RequestId")
                               if isinstance(o.get("ResponseMetadata"), dict) else None)
                if r is not None:
                    return r
            # a stream manager: its stream lives on a name-mangled attribute
            d = getattr(o, "__dict__", None)
            if isinstance(d, dict):
                for k, v in d.items():
                    if k.endswith("__stream") or k.endswith("__api_request"):
                        nxt.append(v)
        todo = nxt
    return None


@dataclass
class Tally:
    """The process's running tally of calls through flextier (``flextier.totals()``).

    ``cost``/``standard_cost`` sum the calls whose price is known; ``unpriced`` counts the
    others (an unknown model, a stream cut before its bill): unknown is never $0.
    """

    calls: int = 0
    failed: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    cost: Decimal = Decimal(0)
    standard_cost: Decimal = Decimal(0)
    unpriced: int = 0
    sheds: int = 0
    fallbacks: int = 0

    @property
    def saving(self) -> Decimal:
        return self.standard_cost - self.cost

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failed": self.failed, "by_tier": dict(self.by_tier), "cost": str(self.cost),
                "standard_cost": str(self.standard_cost), "saving": str(self.saving), "unpriced": self.unpriced,
                "sheds": self.sheds, "fallbacks": self.fallbacks}


def _history(entry: ModelEntry | None, provider: str | None, attempts: Sequence[Any], output_tokens: int,
             url: Any) -> None:
    """Every intercepted call's attempts go into the per-user history (docs/history.md).

    A call to a loopback endpoint (the emulator, or any local stand-in) or made while flextier is
    offline (``--emulate``) is kept with the emulated history, never mixed into the real one.
    """
    if not attempts:
        return
    global _record_call
    if _record_call is None:   # imported at the first call (history imports this module's neighbours)
        from .history.recorder import record_call as _rc
        _record_call = _rc

    name = entry.name if entry is not None else f"{provider}/unknown"
    _record_call(provider=(entry.provider if entry is not None else provider) or "unknown", model=name,
                 attempts=attempts, output_tokens=output_tokens, emulated=offline_active() or _loopback(url))


_record_call: Any = None
_LOOPBACK: dict[Any, bool] = {}


def _loopback(url: Any) -> bool:
    """Whether a call's URL is a loopback endpoint, kept per host: parsing the URL and the address
    per call was a third of the history step's CPU (docs/gateway.md, "Per-call CPU")."""
    if url is None:
        return False
    host = getattr(url, "host", None)   # an httpx.URL: its host is already parsed
    k = host if isinstance(host, str) else str(url)
    got = _LOOPBACK.get(k)
    if got is None:
        if len(_LOOPBACK) > 1024:
            _LOOPBACK.clear()
        got = _LOOPBACK[k] = is_loopback_host(host) if isinstance(host, str) else is_loopback_url(k)
    return got


class _Totals:
    """The process's tally (``totals()``), and the one place an intercepted call is accounted:
    every call, answered or failed, also goes into the per-user history."""

    def __init__(self) -> None:
        self._t = Tally()
        self._lock = threading.Lock()

    def add(self, r: CallResult, url: Any = None) -> None:
        _history(r.model, None, r.attempts, r.usage.output_tokens if r.usage is not None else 0, url)
        sheds = sum(1 for a in r.attempts if a.outcome == "FlexCapacityUnavailable")
        fell = any(a.tier == "flex" for a in r.attempts) and r.attempts and r.attempts[-1].tier != "flex"
        with self._lock:
            t = self._t
            t.calls += 1
            t.by_tier[r.tier] = t.by_tier.get(r.tier, 0) + 1
            if r.cost is None or r.standard_cost is None:
                t.unpriced += 1
            else:
                t.cost += r.cost
                t.standard_cost += r.standard_cost
            t.sheds += sheds
            t.fallbacks += 1 if fell else 0

    def fail(self, err: BaseException, entry: ModelEntry | None = None, url: Any = None) -> None:
        attempts = getattr(err, "attempts", None) or []
        _history(entry, getattr(err, "provider", None), attempts, 0, url)
        with self._lock:
            self._t.calls += 1
            self._t.failed += 1
            self._t.sheds += sum(1 for a in attempts if a.outcome == "FlexCapacityUnavailable")

    def snapshot(self, reset: bool) -> Tally:
        with self._lock:
            t = self._t
            out = Tally(t.calls, t.failed, dict(t.by_tier), t.cost, t.standard_cost, t.unpriced, t.sheds, t.fallbacks)
            if reset:
                self._t = Tally()
            return out


TOTALS = _Totals()


def totals(reset: bool = False) -> Tally:
    """The running tally of every call flextier intercepted in this process; ``reset=True``
    returns it and starts a new one."""
    return TOTALS.snapshot(reset)


# -- shared by the httpx engine and the botocore hooks ------------------------------------------------

def finalize_stream(result: CallResult, obs: StreamObserver) -> None:
    """Served tier and price of a stream, once its bill arrived; unknown (None) otherwise, never $0."""
    if obs.served is not None:
        result.tier = obs.served
        if result.attempts:
            result.attempts[-1].served_tier = obs.served
    if obs.usage is not None and obs.usage_final:
        result.usage = obs.usage
        c = price_usage(obs.usage, result.model, result.tier)
        result.cost, result.standard_cost = c.cost, c.standard_cost
    else:
        result.usage = None
        result.cost = result.standard_cost = None


def cut_stream(obs: StreamObserver, provider: str) -> Transient:
    """A stream that ended without the provider's end-of-message event was cut off."""
    return Transient("the stream ended before the provider finished the message", tier=obs.tier,
                     provider=provider, possibly_billed=True)


def _money(v: Decimal | None) -> str:
    return "" if v is None else str(v)


def flextier_headers(result: CallResult, serial: str) -> list[tuple[str, str]]:
    tier = "" if result.tier in (None, "unknown") else result.tier   # a stream naming its tier at the end
    return [(H_TIER, tier), (H_ATTEMPTS, str(len(result.attempts))), (H_COST, _money(result.cost)),
            (H_STD, _money(result.standard_cost)), (H_CALL, serial)]


class Recorder:
    """One stream's end: priced once (when it ends, is closed, or is abandoned), then tallied."""

    __slots__ = ("result", "obs", "_done", "url")

    def __init__(self, result: CallResult, obs: StreamObserver, url: Any = None) -> None:
        self.result, self.obs, self._done, self.url = result, obs, False, url
        finalize_stream(result, obs)

    def finish(self) -> None:
        if not self._done:
            self._done = True
            finalize_stream(self.result, self.obs)
            TOTALS.add(self.result, self.url)


# -- the httpx engine ----------------------------------------------------------------------------

class _Engine:
    """Recognition, per-attempt requests and classification; shared by the sync and async transports."""

    def __init__(self, hx: Any, dialects: Sequence[Dialect], policy: Policy | None, catalog: Catalog | None) -> None:
        self.hx = hx
        self.dialects = tuple(dialects)
        self.policy = policy or Policy()
        self.catalog = catalog or default_catalog()
        self._classes = _stream_classes(hx)

    def recognise(self, request: Any) -> tuple[Dialect, Call, bytes] | None:
        if request.method != "POST":
            return None
        pre = request.extensions.get(CALL_EXTENSION)
        if pre is not None and pre[1] is not None and pre[0] in self.dialects:
            return pre[0], pre[1], request.content
        path = request.url.path
        for d in self.dialects:
            # cheap test first: the JSON body is only parsed for a path the dialect knows
            try:
                body = request.content
            except Exception:  # noqa: BLE001 - a streaming upload: not a generation call
                return None
            call = d.recognise("POST", path, body)
            if call is not None:
                return d, call, body
        return None

    def setup(self, d: Dialect, call: Call, request: Any = None) -> tuple[ModelEntry, Policy]:
        entry = lookup(self.catalog, d.provider, call.model)
        # a caller that decides per request (the gateway: headers, per-key policy) puts its
        # Policy in the request's extensions under POLICY_EXTENSION; else the transport's own
        ext = getattr(request, "extensions", None) or {}
        pol = ext.get(POLICY_EXTENSION) or self.policy
        if call.explicit is not None:
            pol = pol.replace(tier=call.explicit)
        return entry, pol

    def attempt(self, request: Any, d: Dialect, call: Call, raw: bytes, tier: str, timeout: float | None) -> Any:
        """The SDK's request, re-bodied for this attempt's tier. Updated in place (building a new
        httpx request per call cost more than everything else flextier does): ``raw``, the body
        the caller sent, is kept aside for the next attempt."""
        body, changes = d.attempt_body(call, tier, raw)
        headers = request.headers
        for k, v in changes.items():
            if v is None:
                headers.pop(k, None)
            else:
                headers[k] = v
        if body is not request.content:
            headers["content-length"] = str(len(body))
            request._content = body  # noqa: SLF001 - what Request.read() returns
            request.stream = self.hx.ByteStream(body)
        if timeout is not None:
            # the policy's attempt timeout bounds the whole exchange (the guard's total deadline is
            # the largest of these, flextier/guard.py): no phase may wait longer than it
            t = {k: (timeout if v is None else min(v, timeout))
                 for k, v in (request.extensions.get("timeout") or {}).items()}
            t["read"] = timeout
            request.extensions["timeout"] = t
        return request

    def classify_exc(self, exc: BaseException, tier: str, provider: str) -> ProviderError | None:
        hx = self.hx
        if isinstance(exc, ProviderError):
            exc.tier = exc.tier or tier
            exc.provider = exc.provider or provider
            return exc
        if isinstance(exc, (hx.ConnectTimeout, hx.PoolTimeout)):
            return Transient("connect timeout", tier=tier, provider=provider)
        if isinstance(exc, hx.TimeoutException):
            return Timeout("the call ran past its timeout", tier=tier, provider=provider, possibly_billed=True)
        if isinstance(exc, (hx.ReadError, hx.RemoteProtocolError, hx.WriteError)):
            return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=provider,
                             possibly_billed=True)
        if isinstance(exc, hx.TransportError):
            return Transient(f"connection error: {type(exc).__name__}", tier=tier, provider=provider)
        if isinstance(exc, ValueError):  # a 2xx body that is not JSON
            return Transient("response was not JSON", tier=tier, provider=provider, possibly_billed=True)
        return None

    def error_of(self, d: Dialect, resp: Any, content: bytes, request: Any, tier: str) -> ProviderError:
        err = d.classify(resp.status_code, resp.headers, content, request.url, tier)
        err.tier = err.tier or tier
        err.provider = err.provider or d.provider
        return err

    def headers_of(self, resp: Any) -> list[tuple[str, str]]:
        return [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _DROP_HEADERS]

    def reply(self, request: Any, result: CallResult, rid: str | None) -> Any:
        """The provider's response itself (its body already read and decoded), with flextier's headers."""
        resp, content = result.raw
        result.raw = None
        serial = remember(result, rid)
        TOTALS.add(result, request.url)
        # one new header list, not three deletes and five sets (each a scan of every header)
        resp.headers = self.hx.Headers([kv for kv in resp.headers.raw if kv[0].lower() not in _DROP_RAW]
                                       + [(k.encode(), v.encode()) for k, v in flextier_headers(result, serial)])
        return resp

    def stream_reply(self, request: Any, d: Dialect, result: CallResult, sync: bool) -> Any:
        resp, obs, buf, it = result.raw
        result.raw = None
        rec = Recorder(result, obs, request.url)
        serial = remember(result, obs.rid)
        cls = self._classes[0 if sync else 1]
        stream = cls(self, resp, obs, buf, it, rec, d)
        return self.hx.Response(resp.status_code, headers=self.headers_of(resp) + flextier_headers(result, serial),
                                stream=stream, request=request, extensions=resp.extensions)


def _stream_classes(hx: Any) -> tuple[type, type]:
    cached = _STREAM_CLASSES.get(hx)
    if cached is not None:
        return cached

    class FlexByteStream(hx.SyncByteStream):
        """The rest of a stream after the read-ahead: watched, cut detected, priced at the end."""

        def __init__(self, eng: _Engine, resp: Any, obs: StreamObserver, buf: list[bytes], it: Iterator[bytes] | None,
                     rec: Recorder, d: Dialect) -> None:
            self.eng, self.resp, self.obs, self.buf, self.it, self.rec, self.d = eng, resp, obs, buf, it, rec, d

        def __iter__(self) -> Iterator[bytes]:
            obs = self.obs
            try:
                while self.buf:
                    yield self.buf.pop(0)
                if self.it is not None:
                    for chunk in self.it:
                        out = obs.feed(chunk)
                        if out:
                            yield out
                    tail = obs.flush()
                    if tail:
                        yield tail
                    if not obs.done:
                        raise cut_stream(obs, self.d.provider)
            except ProviderError as err:
                raise self.d.surface(err) from err.__cause__
            except Exception as exc:
                err = self.eng.classify_exc(exc, obs.tier, self.d.provider)
                if err is None:
                    raise
                raise self.d.surface(err) from exc
            finally:
                self.close()

        def close(self) -> None:
            self.rec.finish()
            self.resp.close()

    class AsyncFlexByteStream(hx.AsyncByteStream):
        def __init__(self, eng: _Engine, resp: Any, obs: StreamObserver, buf: list[bytes], it: Any,
                     rec: Recorder, d: Dialect) -> None:
            self.eng, self.resp, self.obs, self.buf, self.it, self.rec, self.d = eng, resp, obs, buf, it, rec, d

        async def __aiter__(self) -> Any:
            obs = self.obs
            try:
                while self.buf:
                    yield self.buf.pop(0)
                if self.it is not None:
                    async for chunk in self.it:
                        out = obs.feed(chunk)
                        if out:
                            yield out
                    tail = obs.flush()
                    if tail:
                        yield tail
                    if not obs.done:
                        raise cut_stream(obs, self.d.provider)
            except ProviderError as err:
                raise self.d.surface(err) from err.__cause__
            except Exception as exc:
                err = self.eng.classify_exc(exc, obs.tier, self.d.provider)
                if err is None:
                    raise
                raise self.d.surface(err) from exc
            finally:
                await self.aclose()

        async def aclose(self) -> None:
            self.rec.finish()
            await self.resp.aclose()

    _STREAM_CLASSES[hx] = (FlexByteStream, AsyncFlexByteStream)
    return _STREAM_CLASSES[hx]


_STREAM_CLASSES: dict[Any, tuple[type, type]] = {}


def transport(inner: Any, hx: Any, dialects: Iterable[Dialect], policy: Policy | None = None,
              catalog: Catalog | None = None) -> Any:
    """``inner`` (an httpx or httpx2 ``BaseTransport``) with flex on its generation requests.

    ``hx`` is the module ``inner`` belongs to (``httpx`` or ``httpx2``); ``dialects`` the
    providers whose requests to recognise. Closing it does not close ``inner`` when
    ``inner`` is shared with a client the caller still owns (``owns_inner=False``).
    """
    eng = _Engine(hx, list(dialects), policy, catalog)

    class FlexTransport(hx.BaseTransport):
        engine = eng

        def __init__(self) -> None:
            self.inner = inner
            self.owns_inner = True

        def handle_request(self, request: Any) -> Any:
            rec = eng.recognise(request)
            if rec is None:
                return inner.handle_request(request)
            d, call, raw = rec
            entry, pol = eng.setup(d, call, request)

            def send(tier: str, timeout: float | None) -> AttemptOutcome:
                req = eng.attempt(request, d, call, raw, tier, timeout)
                deadline = guard.begin(req)
                try:
                    resp = inner.handle_request(req)
                except Exception as exc:
                    err = eng.classify_exc(exc, tier, d.provider)
                    if err is None:
                        raise
                    raise err from exc
                try:
                    guard.take_over(resp, hx, deadline, req, streamed=call.stream and resp.status_code < 300)
                    if resp.status_code >= 300:
                        content = resp.read()
                        raise eng.error_of(d, resp, content, request, tier)
                    if not call.stream:
                        content = resp.read()
                        r = d.reply(call, resp.headers, content, tier)
                        call.extra["rid"] = r.rid
                        return AttemptOutcome(body={}, text=r.text, served_tier=r.served, usage=r.usage,
                                              raw=(resp, content))
                    return _read_ahead(d, call, resp, tier)
                except ProviderError:
                    resp.close()
                    raise
                except Exception as exc:
                    resp.close()
                    err = eng.classify_exc(exc, tier, d.provider)
                    if err is None:
                        raise
                    raise err from exc

            try:
                result = call_with_policy(send, pol, entry=entry)
            except ProviderError as err:
                TOTALS.fail(err, entry, request.url)
                raise d.surface(err) from err.__cause__
            if call.stream:
                return eng.stream_reply(request, d, result, True)
            return eng.reply(request, result, call.extra.get("rid"))

        def close(self) -> None:
            if self.owns_inner:
                inner.close()

    return FlexTransport()


def _hold(held: int, out: bytes) -> int:
    """Bytes the read-ahead holds before the first content token, capped like a whole body
    (:data:`flextier.guard.MAX_RESPONSE_BYTES`): a stream of empty events is refused
    and retried, not buffered without end."""
    held += len(out)
    if held > guard.MAX_RESPONSE_BYTES:
        raise guard.response_too_large(f"held before the stream's first token passed "
                                       f"{guard.MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
    return held


def _read_ahead(d: Dialect, call: Call, resp: Any, tier: str) -> AttemptOutcome:
    """Read a stream up to its first content token: until then a failure may still be retried."""
    obs = d.observer(call, tier)
    obs.on_headers(resp.headers)
    it = resp.iter_bytes()
    buf: list[bytes] = []
    rest: Any = it
    held = 0
    for chunk in it:
        out = obs.feed(chunk)
        if obs.error is not None and not obs.first:
            raise obs.error
        if out:
            buf.append(out)
            held = _hold(held, out)
        if obs.first:
            break
    else:
        rest = None
        tail = obs.flush()
        if tail:
            buf.append(tail)
        if obs.error is not None and not obs.first:
            raise obs.error
        if not obs.done:
            raise cut_stream(obs, d.provider)
    return AttemptOutcome(body={}, text="", served_tier=obs.served or "unknown", usage=obs.usage or Usage(),
                          raw=(resp, obs, buf, rest))


async def _aread_ahead(d: Dialect, call: Call, resp: Any, tier: str) -> AttemptOutcome:
    obs = d.observer(call, tier)
    obs.on_headers(resp.headers)
    it = resp.aiter_bytes()
    buf: list[bytes] = []
    rest: Any = it
    ended = True
    held = 0
    async for chunk in it:
        out = obs.feed(chunk)
        if obs.error is not None and not obs.first:
            raise obs.error
        if out:
            buf.append(out)
            held = _hold(held, out)
        if obs.first:
            ended = False
            break
    if ended:
        rest = None
        tail = obs.flush()
        if tail:
            buf.append(tail)
        if obs.error is not None and not obs.first:
            raise obs.error
        if not obs.done:
            raise cut_stream(obs, d.provider)
    return AttemptOutcome(body={}, text="", served_tier=obs.served or "unknown", usage=obs.usage or Usage(),
                          raw=(resp, obs, buf, rest))


def async_transport(inner: Any, hx: Any, dialects: Iterable[Dialect], policy: Policy | None = None,
                    catalog: Catalog | None = None) -> Any:
    """Async twin of :func:`transport` (``inner`` is an ``AsyncBaseTransport``)."""
    eng = _Engine(hx, list(dialects), policy, catalog)

    class AsyncFlexTransport(hx.AsyncBaseTransport):
        engine = eng

        def __init__(self) -> None:
            self.inner = inner
            self.owns_inner = True

        async def handle_async_request(self, request: Any) -> Any:
            rec = eng.recognise(request)
            if rec is None:
                return await inner.handle_async_request(request)
            d, call, raw = rec
            entry, pol = eng.setup(d, call, request)

            async def send(tier: str, timeout: float | None) -> AttemptOutcome:
                req = eng.attempt(request, d, call, raw, tier, timeout)
                deadline = guard.begin(req)
                try:
                    resp = await inner.handle_async_request(req)
                except Exception as exc:
                    err = eng.classify_exc(exc, tier, d.provider)
                    if err is None:
                        raise
                    raise err from exc
                try:
                    guard.take_over(resp, hx, deadline, req, streamed=call.stream and resp.status_code < 300,
                                    sync=False)
                    if resp.status_code >= 300:
                        content = await resp.aread()
                        raise eng.error_of(d, resp, content, request, tier)
                    if not call.stream:
                        content = await resp.aread()
                        r = d.reply(call, resp.headers, content, tier)
                        call.extra["rid"] = r.rid
                        return AttemptOutcome(body={}, text=r.text, served_tier=r.served, usage=r.usage,
                                              raw=(resp, content))
                    return await _aread_ahead(d, call, resp, tier)
                except ProviderError:
                    await resp.aclose()
                    raise
                except Exception as exc:
                    await resp.aclose()
                    err = eng.classify_exc(exc, tier, d.provider)
                    if err is None:
                        raise
                    raise err from exc

            try:
                result = await acall_with_policy(send, pol, entry=entry)
            except ProviderError as err:
                TOTALS.fail(err, entry, request.url)
                raise d.surface(err) from err.__cause__
            if call.stream:
                return eng.stream_reply(request, d, result, False)
            return eng.reply(request, result, call.extra.get("rid"))

        async def aclose(self) -> None:
            if self.owns_inner:
                await inner.aclose()

    return AsyncFlexTransport()
