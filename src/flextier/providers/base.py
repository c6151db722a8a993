"""The adapter contract, shared helpers, and the registry :func:`get_adapter`.

Why adapters: every provider puts the tier in a different place, reports the served
tier in a different place, and fails in its own dialect. An adapter hides exactly that
and nothing more: it makes ONE attempt through the official SDK (with the SDK's own
retries switched off), classifies any failure into :mod:`flextier.errors`, and
reads the served tier and usage from the *response*. Retrying, backoff and fallback
belong to :mod:`flextier.policy.fallback`, never to an adapter.

Contract (the runner depends on it)::

    adapter = get_adapter(entry, base_url=None, api_key=None, client=None, timeouts=None)
    outcome = adapter.send(req, tier, timeout)          # sync, one attempt
    outcome = await adapter.asend(req, tier, timeout)   # async, one attempt

* ``tier`` is ``"flex"``, ``"standard"`` or ``"priority"``; ``timeout`` is seconds for this
  attempt (None = the SDK's default).
* Returns :class:`~flextier._types.AttemptOutcome`: ``body`` is the provider's JSON response as
  a plain dict, ``served_tier`` the canonical tier the *response* reports (``"unknown"`` when
  the response names a tier flextier does not know or names none; such calls are priced
  ``None``), ``usage`` normalised (input includes cached, output includes reasoning).
* Raises only :class:`~flextier.errors.ProviderError` subclasses for provider/network
  failures. Programming errors (bad arguments to the SDK) propagate unchanged.

SDK clients are created once per (provider, base_url, key, timeouts) and reused; async
clients are created once per event loop (an async connection pool cannot cross loops).
Connection pools are sized for ``max_connections`` (default 256) concurrent calls.
API keys are handed to the SDK and never logged, stored elsewhere, or put in a repr.
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib
import re
import ssl
import sys
import threading
import weakref
from typing import Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

from .._types import AttemptOutcome, CallRequest
from .._urls import redact_url
from ..catalog import ModelEntry
from ..policy.backoff import retry_after_from_headers
from ..errors import (BadRequest, EndpointNotFound, FlexCapacityUnavailable, Overloaded, ProviderError, QuotaExhausted,
                      RateLimited, TierNotSupported, Transient, Unauthorized)
from ..tiers import normalize_tier

__all__ = ["Adapter", "BaseAdapter", "Transport", "get_adapter", "served_tier", "classify_http",
           "DEFAULT_MAX_CONNECTIONS", "UNKNOWN_TIER", "text_of_content", "split_system", "ITEM_HEADER",
           "item_header_value", "item_headers", "malformed_response", "check_usage", "route_error", "request_url"]

DEFAULT_MAX_CONNECTIONS = 256
UNKNOWN_TIER = "unknown"
#: Seconds added to the read timeout of clients whose timeout is fixed at creation (botocore),
#: so the per-call deadline, not the socket, decides.
TIMEOUT_MARGIN = 30.0

#: Seconds past an async attempt's timeout before it is cut from outside. The SDK's own
#: timeouts and the guarded transport's total deadline (:mod:`flextier.guard`) normally end it first;
#: this catches what they cannot see (a server trickling its response headers).
DEADLINE_GRACE = 1.0

FLEX_CAPACITY_CODES = frozenset({"resource_unavailable", "flex_unavailable", "capacity_exceeded"})
FLEX_PREEMPT_CODES = frozenset({"server_is_overloaded"})
QUOTA_CODES = frozenset({"insufficient_quota", "enforced_spend_limit_reached", "billing_hard_limit_reached",
                         "quota_exceeded"})


@runtime_checkable
class Adapter(Protocol):
    """What the policy loop and the runner need from a provider."""

    provider: str
    entry: ModelEntry

    def send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome: ...

    async def asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome: ...


def served_tier(raw: Any) -> str:
    """Canonical served tier from a provider's own spelling; ``"unknown"`` if absent/unrecognised."""
    return normalize_tier(raw) or UNKNOWN_TIER


def classify_http(*, status: int | None, code: str | None, err_type: str | None, message: str,
                  tier: str, provider: str, retry_after: float | None = None) -> ProviderError:
    """The OpenAI-style HTTP error dialect (OpenAI, Anthropic, Groq-like) -> taxonomy."""
    kw = dict(status=status, code=code or err_type, retry_after=retry_after, tier=tier, provider=provider)
    low = (message or "").lower()
    if code in FLEX_CAPACITY_CODES or status == 498:
        return FlexCapacityUnavailable(message, **kw)
    if code in QUOTA_CODES or err_type in QUOTA_CODES or "credit balance is too low" in low:
        return QuotaExhausted(message, **kw)
    if tier == "flex" and code in FLEX_PREEMPT_CODES:
        return FlexCapacityUnavailable(message, **kw)   # flex work evicted under standard load
    if status == 529 or err_type == "overloaded_error":
        return Overloaded(message, **kw)
    if status == 429 or (status is None and err_type == "rate_limit_error"):
        return RateLimited(message, **kw)
    if status is not None and (status >= 500 or status in (408, 409)):
        return Transient(message, **kw)
    if status is None:
        # an in-stream error without HTTP status (e.g. an SSE "error" event)
        if err_type in ("server_error", "api_error", "internal_error") or code in ("server_error", "internal_error"):
            return Transient(message, **kw)
        return Transient(message, **kw) if not err_type else BadRequest(message, **kw)
    if tier == "flex" and status == 400 and ("service_tier" in low or "service tier" in low or "flex" in low):
        return TierNotSupported(message, **kw)
    if status in (401, 403):
        return Unauthorized(message, **kw)
    return BadRequest(message, **kw)


def route_error(status: int | None, body: Any, message: str, url: Any, *, tier: str,
                provider: str) -> EndpointNotFound | None:
    """:class:`EndpointNotFound` when a 404/405 is about the endpoint, not the request.

    The adapters only call the provider's generation routes, where a legitimate 404 is the
    provider's own error (``{"error": {...}}`` saying the model was not found). A 405, a 404
    that is plain text or HTML, a generic JSON shape (``{"detail": "Not Found"}``), an error
    object saying only "Not Found", OpenAI's ``Invalid URL (POST /v1/...)`` or Google's
    ``Method not found.`` mean no such
    route: the base URL is wrong, and every request would fail alike.
    """
    if status not in (404, 405):
        return None
    inner = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(inner, Mapping) and isinstance(body, Mapping) and ("code" in body or "type" in body):
        inner = body  # the SDK already unwrapped the error object (openai: exc.body is body["error"])
    if status == 404 and isinstance(inner, Mapping):
        said = str(inner.get("message") or "").strip().lower()
        # OpenAI says "Invalid URL (POST /v1/...)", Google "Method not found." for a route it lacks
        if not (said.startswith(("invalid url", "method not found"))
                or said in ("", "not found", "404 not found", "404 page not found")):
            return None  # the provider's own answer (model not found...): a bad request, not a bad URL
    shown = redact_url(str(url)) if url else None
    what = (message or "").strip().splitlines()[0][:80] if (message or "").strip() else "no such route"
    return EndpointNotFound(f"{shown or 'the endpoint'} answered HTTP {status} ({what}): no such route, so the "
                            f"base URL is wrong", status=status, code="endpoint_not_found", url=shown, tier=tier,
                            provider=provider)


def request_url(response: Any) -> Any:
    """The URL an httpx response answered, or None (a response built by hand has no request)."""
    try:
        return response.request.url
    except (AttributeError, RuntimeError):
        return None


def error_fields(body: Any) -> tuple[str | None, str | None, str]:
    """(code, type, message) from an OpenAI/Anthropic error body (outer or inner object)."""
    if isinstance(body, Mapping):
        inner = body.get("error") if isinstance(body.get("error"), Mapping) else body
        code = inner.get("code")
        if code is None and isinstance(inner.get("details"), Mapping):
            code = inner["details"].get("error_code")
        return (None if code is None else str(code), inner.get("type") if isinstance(inner.get("type"), str) else None,
                str(inner.get("message") or ""))
    return None, None, "" if body is None else str(body)[:500]


#: Request header carrying the job item's id, so a provider-side ledger (the emulator's,
#: a proxy's) can be reconciled item by item with the client's.
ITEM_HEADER = "x-flextier-item"
_ITEM_SAFE = "-_.~:@!$&'()*+,;=/"
_ITEM_PLAIN = re.compile(r"[A-Za-z0-9_.~:@!$&'()*+,;=/-]*").fullmatch  # what quote() leaves alone


def item_header_value(custom_id: str | None) -> str | None:
    """``custom_id`` made safe for an HTTP header (ASCII, no controls): percent-encoded where needed."""
    if not custom_id:
        return None
    v = str(custom_id)
    if _ITEM_PLAIN(v):  # nothing to encode (the usual id): skip quote()
        return v[:2048]
    from urllib.parse import quote

    return quote(v, safe=_ITEM_SAFE)[:2048]


#: Per attempt (a contextvar: each of the runner's attempts is its own task): called with the
#: provider's id of a request it accepted to answer later (OpenAI Responses background mode), so
#: the runner records it before the answer (jobs/sends.py ``SendBook.remote``). Unset: nobody asks.
REMOTE_ID_SINK: "contextvars.ContextVar[Callable[[str], None] | None]" = contextvars.ContextVar(
    "flextier_remote_id_sink", default=None)


def note_remote_id(remote_id: str) -> None:
    """Hand ``remote_id`` to this attempt's :data:`REMOTE_ID_SINK`, if any."""
    sink = REMOTE_ID_SINK.get()
    if sink is not None:
        sink(remote_id)


def item_headers(req: CallRequest) -> dict[str, str]:
    """``{ITEM_HEADER: <id>}`` for a request that carries a job item id, else ``{}``."""
    v = item_header_value(getattr(req, "custom_id", None))
    return {ITEM_HEADER: v} if v else {}


def malformed_response(what: str, *, tier: str, provider: str) -> Transient:
    """A 2xx response that is not a usable result (no content, no usage, not JSON...).

    Retryable, and possibly billed: the provider may have done (and charged for) the work
    even though what came back cannot be recorded as a result.
    """
    return Transient(f"malformed response: {what}", tier=tier, provider=provider, code="malformed_response",
                     possibly_billed=True)


def check_usage(u: Any, keys: tuple[str, ...], *, tier: str, provider: str) -> None:
    """Raise :func:`malformed_response` unless ``u`` is a usage object with the given counts as ints >= 0."""
    if not isinstance(u, Mapping) or not u:
        raise malformed_response("no usage block", tier=tier, provider=provider)
    if not any(k in u for k in keys):
        raise malformed_response("usage has no token counts", tier=tier, provider=provider)
    for k, v in u.items():
        if k in keys and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise malformed_response(f"usage.{k} is not a token count", tier=tier, provider=provider)


def text_of_content(content: Any) -> str:
    """Text of an OpenAI-style message content: a string or a list of ``{"type":"text","text":...}``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    return str(content)


def split_system(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """System/developer messages joined into one instruction, and the rest."""
    system = [text_of_content(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    return ("\n\n".join(system) if system else None), rest


def tls_context(base_url: str | None, create: Callable[[], Any]) -> Any:
    """The TLS context for an endpoint's async clients: ``create()`` (the CA bundle) for https.

    A plain ``http://`` endpoint (the emulator, a local proxy) never negotiates TLS, and
    loading the CA bundle costs 70-700 ms of CPU inside the event loop at the first request:
    under ``--time-scale 600`` that was up to 7 emulated minutes added to every request of
    the first wave. Such endpoints get a bare context with no CAs, which
    is never used and would fail closed (verification on, nothing trusted) if it were.
    """
    if base_url and base_url.lower().startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return create()


class Transport:
    """The SDK clients of one provider endpoint: one sync client, one async client per loop.

    ``shards > 1``: that many async clients per loop, handed out round-robin by :meth:`aio`
    (each built by ``make_async`` with its share of the connections). httpx/httpcore's pool
    scans every idle connection (a socket probe each) whenever a request is added or
    finishes, so one pool of 256 connections costs O(256) per request; pools of 32 do not.
    """

    def __init__(self, make_sync: Callable[[], Any], make_async: Callable[[], Any], shards: int = 1) -> None:
        self._make_sync = make_sync
        self._make_async = make_async
        self._sync: Any = None
        self._lock = threading.Lock()
        self._async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
        self._shards = max(1, shards)
        self._rr = 0

    def sync(self) -> Any:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._make_sync()
        return self._sync

    def aio(self) -> Any:
        loop = asyncio.get_running_loop()
        c = self._async.get(loop)
        if c is None:
            c = self._async[loop] = [self._make_async() for _ in range(self._shards)]
        if self._shards == 1:
            return c[0]
        self._rr += 1
        return c[self._rr % self._shards]


class BaseAdapter:
    """Shared plumbing: tier check, error translation around the provider-specific calls."""

    provider: ClassVar[str] = ""
    tiers: ClassVar[tuple[str, ...]] = ("flex", "standard", "priority")

    def __init__(self, entry: ModelEntry, transport: Any) -> None:
        self.entry = entry
        self.transport = transport

    def __repr__(self) -> str:  # never shows keys
        return f"<{type(self).__name__} {self.entry.name}>"

    # -- provider hooks ---------------------------------------------------------------
    @classmethod
    def make_transport(cls, *, base_url: str | None, api_key: str | None, client: Any,
                       timeouts: Mapping[str, float], max_connections: int) -> Any:
        raise NotImplementedError

    def _send(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        raise NotImplementedError

    async def _asend(self, req: CallRequest, tier: str, timeout: float | None) -> AttemptOutcome:
        raise NotImplementedError

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        """Translate an SDK/network exception; None = not a provider failure (re-raise as is)."""
        raise NotImplementedError

    # -- public -----------------------------------------------------------------------
    def check_tier(self, tier: str) -> None:
        if tier not in self.tiers:
            raise TierNotSupported(f"{self.provider} has no {tier!r} tier", tier=tier, provider=self.provider)
        if tier == "flex" and not self.entry.supports_flex:
            raise TierNotSupported(
                f"{self.entry.name} has no flex tier; use standard, or the batch lane for the discount",
                tier=tier, provider=self.provider, code="flex_not_supported")

    def _scrub(self, err: ProviderError) -> ProviderError:
        """Take the API key out of an error message (providers echo it back, e.g. on a 401)."""
        secrets = getattr(self.transport, "secrets", ())
        if secrets and err.message:
            msg = redact_secrets(err.message, secrets)
            if msg != err.message:
                err.message = msg
                err.args = (msg,)
        return err

    def _own(self, err: ProviderError, tier: str) -> ProviderError:
        """A taxonomy error raised below the SDK (the guarded transport): add tier and provider."""
        err.tier = err.tier or tier
        err.provider = err.provider or self.provider
        return self._scrub(err)

    def send(self, req: CallRequest, tier: str, timeout: float | None = None) -> AttemptOutcome:
        """ONE attempt at ``tier``; no retries. Raises taxonomy errors."""
        self.check_tier(tier)
        try:
            return self._send(req, tier, timeout)
        except ProviderError as exc:
            raise self._own(exc, tier)
        except Exception as exc:
            err = self.classify(exc, tier)
            if err is None:
                raise
            raise self._scrub(err) from exc

    async def asend(self, req: CallRequest, tier: str, timeout: float | None = None) -> AttemptOutcome:
        """Async twin of :meth:`send`, bounded as a whole: ``timeout`` (plus :data:`DEADLINE_GRACE`)
        is the attempt's total deadline, whatever the server does (trickled headers or body)."""
        self.check_tier(tier)
        try:
            if timeout is None:
                return await self._asend(req, tier, timeout)
            return await _bounded(self._asend(req, tier, timeout), timeout + DEADLINE_GRACE)
        except ProviderError as exc:
            raise self._own(exc, tier)
        except asyncio.TimeoutError as exc:  # raised by asyncio.wait_for in thread-backed adapters
            from ..errors import Timeout
            raise Timeout("the call ran past its timeout", tier=tier, provider=self.provider,
                          possibly_billed=True) from exc
        except Exception as exc:
            err = self.classify(exc, tier)
            if err is None:
                raise
            raise self._scrub(err) from exc


if sys.version_info >= (3, 11):
    async def _bounded(coro: Any, seconds: float) -> Any:
        """``await coro`` cut off after ``seconds`` (asyncio.TimeoutError); no extra task, unlike wait_for."""
        async with asyncio.timeout(seconds):
            return await coro
else:  # pragma: no cover - Python 3.10
    _bounded = asyncio.wait_for


def redact_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret (of 8+ characters) replaced by ``[REDACTED]``."""
    for s in secrets:
        if s and len(s) >= 8 and s in text:
            text = text.replace(s, "[REDACTED]")
    return text


def retry_after_of(headers: Any) -> float | None:
    try:
        return retry_after_from_headers(headers)
    except Exception:  # noqa: BLE001 - a malformed header must not mask the real error
        return None


# -- registry ---------------------------------------------------------------------------

_ADAPTERS = {
    "openai": "flextier.providers.openai:OpenAIAdapter",
    "gemini": "flextier.providers.gemini:GeminiAdapter",
    "bedrock": "flextier.providers.bedrock:BedrockAdapter",
    "anthropic": "flextier.providers.anthropic:AnthropicAdapter",
    "deepseek": "flextier.providers.deepseek:DeepSeekAdapter",
}
_transports: dict[tuple, Any] = {}
_transports_lock = threading.Lock()


def adapter_class(provider: str) -> type[BaseAdapter]:
    try:
        mod, _, cls = _ADAPTERS[provider].partition(":")
    except KeyError:
        raise ValueError(f"no adapter for provider {provider!r} (known: {', '.join(_ADAPTERS)})") from None
    return getattr(importlib.import_module(mod), cls)


def get_adapter(entry: ModelEntry, *, base_url: str | None = None, api_key: str | None = None,
                client: Any = None, timeouts: Mapping[str, float] | None = None,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> BaseAdapter:
    """The adapter for ``entry.provider``, sharing SDK clients with earlier calls that used the
    same endpoint, key, client and timeouts.

    ``client`` is an SDK client to use instead of creating one (its retries are switched off
    where the SDK allows; see each provider module). ``timeouts`` maps tier -> seconds and
    sets client-level timeouts where the SDK cannot take one per call (botocore).
    """
    cls = adapter_class(entry.provider)
    from .._loopback import check_client, check_endpoint   # while emulating: loopback only

    if client is not None:
        check_client(client, entry.provider)
    else:
        check_endpoint(base_url, entry.provider)
    tmo = dict(timeouts or {})
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None
    ck = (entry.provider, base_url, key_hash, id(client) if client is not None else None,
          tuple(sorted(tmo.items())), max_connections)
    with _transports_lock:
        tr = _transports.get(ck)
        if tr is None:
            tr = cls.make_transport(base_url=base_url, api_key=api_key, client=client, timeouts=tmo,
                                    max_connections=max_connections)
            key = api_key or getattr(client, "api_key", None)
            try:
                tr.secrets = (key,) if isinstance(key, str) and key else ()
            except AttributeError:  # a transport with __slots__: no scrubbing
                pass
            # Hold the user's client so its id() cannot be reused while cached.
            _transports[ck] = tr
    return cls(entry, tr)


def clear_adapter_cache() -> None:
    """Forget cached SDK clients (tests; after rotating keys)."""
    with _transports_lock:
        _transports.clear()
