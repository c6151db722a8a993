"""The ways users call flex without writing retry code: ``wrap()``, ``http_client()`` and ``complete()``.

``wrap(client)`` returns a new client of the *same SDK class* (so ``isinstance`` checks,
instructor, LangChain and pydantic-ai accept it) built from the user's client with
flextier's transport underneath and the SDK's retries off; the user's client is unchanged.
Every path the SDK has to a generation request (``create``, ``parse``, ``stream``,
``with_raw_response``, chats, the libraries on top) goes through the transport engine
(:mod:`flextier.intercept`): flex with backoff and fallback per the
:class:`~flextier.policy.fallback.Policy`, served tier and cost read from the response.
Supported: ``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/``AsyncAnthropic``,
``google.genai.Client`` (and ``.aio``), boto3/botocore ``bedrock-runtime`` clients.

``http_client()`` / ``async_http_client()`` are plain ``httpx`` clients with the same
transport, for libraries that take one (``OpenAI(http_client=...)``, LangChain
``ChatOpenAI(http_client=..., http_async_client=...)``, pydantic-ai ``OpenAIProvider``).

``info(obj)`` is the :class:`~flextier._types.CallResult` behind whatever the SDK returned;
``totals()`` the running tally for the process. ``complete()`` is one provider-neutral call.

Errors: a call the policy gives up on raises a :mod:`flextier.errors` class (with the
attempts as ``.attempts``), from the SDK method the caller used. Streams fall back only
before their first content token; a stream cut after it raises a possibly billed
:class:`~flextier.errors.Transient` to the caller. See docs/providers.md and docs/errors.md.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from ._types import CallRequest, CallResult
from .catalog import Catalog, ModelEntry, default_catalog
from .intercept import Tally, info, totals
from .policy.fallback import Policy, acall_with_policy, call_with_policy
from .providers import get_adapter

__all__ = ["wrap", "info", "totals", "Tally", "complete", "acomplete", "http_client", "async_http_client",
           "CompletionStream", "AsyncCompletionStream"]


# -- complete ------------------------------------------------------------------------------

def _request(model: str | ModelEntry, messages: list[dict[str, Any]] | None, policy: Policy | None,
             tier: str | None, endpoint: str, native: dict[str, Any] | None, params: dict[str, Any],
             catalog: Catalog | None) -> tuple[ModelEntry, Policy, CallRequest]:
    entry = model if isinstance(model, ModelEntry) else (catalog or default_catalog()).resolve(model)
    pol = policy or Policy()
    if tier is not None:
        pol = pol.replace(tier=tier)
    if messages is None and native is None:
        raise TypeError("complete() needs messages=[...] or native={...}")
    if native is not None:
        native = {k: v for k, v in native.items() if k not in ("stream", "stream_options")}
    return entry, pol, CallRequest(model=entry, messages=messages, params=params, native=native, endpoint=endpoint)


def _prepare(model: str | ModelEntry, messages: list[dict[str, Any]] | None, policy: Policy | None,
             tier: str | None, endpoint: str, native: dict[str, Any] | None, params: dict[str, Any],
             base_url: str | None, api_key: str | None, client: Any, catalog: Catalog | None):
    entry, pol, req = _request(model, messages, policy, tier, endpoint, native, params, catalog)
    adapter = get_adapter(entry, base_url=base_url, api_key=api_key, client=client, timeouts=pol.timeouts())
    return entry, pol, req, adapter


def _finish(result: CallResult) -> CallResult:
    if result.raw is None:
        result.raw = result.body
    return result


def complete(model: str | ModelEntry, messages: list[dict[str, Any]] | None = None, *,
             policy: Policy | None = None, tier: str | None = None, endpoint: str = "chat",
             native: dict[str, Any] | None = None, deadline: float | None = None,
             base_url: str | None = None, api_key: str | None = None, client: Any = None,
             catalog: Catalog | None = None, **params: Any) -> "CallResult | CompletionStream":
    """One provider-neutral call on flex, with backoff and fallback per ``policy``.

    ``model`` is a catalog name or alias (``"gemini/gemini-3-flash"``); ``messages`` are
    OpenAI-style ``{"role", "content"}`` dicts; other keyword arguments (``max_tokens``,
    ``temperature``, ...) are translated per provider. ``endpoint="responses"`` uses the
    OpenAI Responses API. ``deadline`` is seconds from now by which the call must be done.
    Returns a :class:`CallResult` (``text``, ``raw`` = response JSON, ``tier`` served,
    ``usage``, ``cost``, ``standard_cost``, ``saving``, ``attempts``). Raises a
    :mod:`flextier.errors` class when the policy gives up.

    ``stream=True`` returns a :class:`CompletionStream` instead: iterate it for the text as it
    arrives. It goes through the transport engine (the SDK's own stream call on a
    :func:`wrap`-ped client), so flex comes first and a fallback happens only before the first
    token (this call returns once that token is in, or raises); usage is asked for where the
    provider needs asking; the call is priced by its served tier once the stream ends, and
    ``flextier.info(stream)`` (or ``stream.result``) is then its :class:`CallResult`.
    """
    if params.pop("stream", False):
        return _stream(model, messages, policy, tier, endpoint, native, deadline, base_url, api_key, client,
                       catalog, params)
    entry, pol, req, adapter = _prepare(model, messages, policy, tier, endpoint, native, params,
                                        base_url, api_key, client, catalog)
    deadline_at = None if deadline is None else pol.clock() + deadline
    return _finish(call_with_policy(lambda t, to: adapter.send(req, t, to), pol, entry=entry,
                                    deadline_at=deadline_at))


async def acomplete(model: str | ModelEntry, messages: list[dict[str, Any]] | None = None, *,
                    policy: Policy | None = None, tier: str | None = None, endpoint: str = "chat",
                    native: dict[str, Any] | None = None, deadline: float | None = None,
                    base_url: str | None = None, api_key: str | None = None, client: Any = None,
                    catalog: Catalog | None = None, **params: Any) -> "CallResult | AsyncCompletionStream":
    """Async twin of :func:`complete`; ``stream=True`` returns an :class:`AsyncCompletionStream`."""
    if params.pop("stream", False):
        return await _astream(model, messages, policy, tier, endpoint, native, deadline, base_url, api_key, client,
                              catalog, params)
    entry, pol, req, adapter = _prepare(model, messages, policy, tier, endpoint, native, params,
                                        base_url, api_key, client, catalog)
    deadline_at = None if deadline is None else pol.clock() + deadline
    return _finish(await acall_with_policy(lambda t, to: adapter.asend(req, t, to), pol, entry=entry,
                                           deadline_at=deadline_at))


# -- complete(stream=True) ---------------------------------------------------------------------

#: provider -> the module with its ``stream_text`` / ``astream_text`` (the SDK's own stream call)
_STREAMERS = {"openai": "flextier.providers.openai.wire", "anthropic": "flextier.providers.anthropic.wire",
              "gemini": "flextier.providers.gemini.wire", "bedrock": "flextier.providers.bedrock.hooks"}


class CompletionStream:
    """The text of a ``complete(stream=True)`` call, as it arrives.

    Iterate it for text pieces (``str``). Once it has ended, :attr:`result` (and
    ``flextier.info(stream)``) is the call's :class:`CallResult`: served tier, attempts, usage and
    cost priced by the served tier, ``text`` the whole answer; before the end it is the call so
    far, priced None (a stream's bill comes at its end). Use it as a context manager, or
    :meth:`close` it, to let go of an unfinished stream.
    """

    def __init__(self, handle: Any, items: Any, text_of: Callable[[Any], str | None]) -> None:
        self._handle, self._items, self._text_of = handle, items, text_of
        self._it: Any = iter(items) if hasattr(items, "__iter__") else None   # one iterator: SDK streams re-iterate badly
        self._last: Any = None
        self._parts: list[str] = []
        self._pending: list[str] = []
        self.done = False

    def _pull(self) -> str | None:
        """The next piece of text; None at the end."""
        for item in self._it:
            self._last = item
            t = self._text_of(item)
            if t:
                self._parts.append(t)
                return t
        self.done = True
        return None

    def _prime(self) -> "CompletionStream":
        """Read to the first text, so errors before it (after the policy gave up) raise from complete()."""
        t = self._pull()
        if t is not None:
            self._pending.append(t)
        return self

    def __iter__(self) -> Iterator[str]:
        while self._pending:
            yield self._pending.pop(0)
        while not self.done:
            t = self._pull()
            if t is not None:
                yield t

    @property
    def text(self) -> str:
        """The text received so far (all of it once the stream is done)."""
        return "".join(self._parts)

    @property
    def result(self) -> CallResult | None:
        r = info(self._handle if self._handle is not None else self._last)
        if r is not None and self.done:
            r.text = self.text
        return r

    _flextier_result = result   # what flextier.info() asks (flextier/intercept.py)

    def close(self) -> None:
        for o in (self._handle, self._items):
            c = getattr(o, "close", None)
            if callable(c):
                c()
                return

    def __enter__(self) -> "CompletionStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncCompletionStream(CompletionStream):
    """Async twin of :class:`CompletionStream`: ``async for piece in stream``."""

    def __init__(self, handle: Any, items: Any, text_of: Callable[[Any], str | None], sync_items: bool = False) -> None:
        super().__init__(handle, items, text_of)
        self._sync_items = sync_items   # a botocore event stream: read on a worker thread
        if not sync_items:
            self._it = items.__aiter__()

    async def _apull(self) -> str | None:
        while True:
            if self._sync_items:
                item = await asyncio.to_thread(next, self._it, _END)
            else:
                try:
                    item = await self._it.__anext__()
                except StopAsyncIteration:
                    item = _END
            if item is _END:
                self.done = True
                return None
            self._last = item
            t = self._text_of(item)
            if t:
                self._parts.append(t)
                return t

    async def _aprime(self) -> "AsyncCompletionStream":
        t = await self._apull()
        if t is not None:
            self._pending.append(t)
        return self

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        raise TypeError("an AsyncCompletionStream is read with `async for`")

    async def __aiter__(self) -> AsyncIterator[str]:
        while self._pending:
            yield self._pending.pop(0)
        while not self.done:
            t = await self._apull()
            if t is not None:
                yield t

    async def aclose(self) -> None:
        for o in (self._handle, self._items):
            c = getattr(o, "aclose", None) or getattr(o, "close", None)
            if callable(c):
                r = c()
                if asyncio.iscoroutine(r):
                    await r
                return

    async def __aenter__(self) -> "AsyncCompletionStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


_END = object()
_SDK_CLIENTS: dict[tuple[Any, ...], Any] = {}
_SDK_LOCK = threading.Lock()


def _sdk_client(entry: ModelEntry, base_url: str | None, api_key: str | None, sync: bool) -> Any:
    """A plain SDK client for the stream path (SDK retries off, no guard of its own: the engine
    under :func:`wrap` applies it). Sync clients are kept per endpoint and key; async ones are made
    per call (an async connection pool cannot cross event loops)."""
    key = (entry.provider, base_url, hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None)
    if sync:
        with _SDK_LOCK:
            c = _SDK_CLIENTS.get(key)
            if c is not None:
                return c
    p = entry.provider
    if p == "bedrock":
        from .providers.bedrock import make_client as bedrock_client
        c = bedrock_client(base_url)
    else:
        mod = importlib.import_module(f"flextier.providers.{p}")
        c = mod.make_client(base_url, api_key, guard=False) if p == "gemini" else \
            mod.make_client(base_url, api_key, sync=sync, guard=False)
    if sync:
        with _SDK_LOCK:
            c = _SDK_CLIENTS.setdefault(key, c)
    return c


def _stream_setup(model: str | ModelEntry, messages: list[dict[str, Any]] | None, policy: Policy | None,
                  tier: str | None, endpoint: str, native: dict[str, Any] | None, deadline: float | None,
                  base_url: str | None, api_key: str | None, client: Any, catalog: Catalog | None,
                  params: dict[str, Any], sync: bool) -> tuple[Any, Any, Any, CallRequest]:
    from .providers.base import adapter_class

    entry, pol, req = _request(model, messages, policy, tier, endpoint, native, params, catalog)
    if entry.provider not in _STREAMERS:
        raise TypeError(f"complete(stream=True) does not stream {entry.provider} models yet; "
                        f"supported: {', '.join(_STREAMERS)}")
    if deadline is not None:
        pol = pol.replace(deadline=deadline)
    from ._loopback import check_client

    if client is not None:
        check_client(client, entry.provider)
        is_async = type(client).__name__.startswith("Async")   # AsyncOpenAI, AsyncAnthropic, genai AsyncClient
        if entry.provider in ("openai", "anthropic") and is_async == sync:
            raise TypeError(f"complete(stream=True) was given {'an async' if is_async else 'a sync'} "
                            f"{type(client).__name__}; use {'acomplete' if is_async else 'complete'}(stream=True)")
    base = client if client is not None else _sdk_client(entry, base_url, api_key, sync)
    wrapped = wrap(base, pol, catalog=catalog)
    adapter = adapter_class(entry.provider)(entry, None)   # its request builder only: no transport
    return importlib.import_module(_STREAMERS[entry.provider]), wrapped, adapter, req


def _stream(model: Any, messages: Any, policy: Any, tier: Any, endpoint: str, native: Any, deadline: Any,
            base_url: Any, api_key: Any, client: Any, catalog: Any, params: dict[str, Any]) -> CompletionStream:
    mod, wrapped, adapter, req = _stream_setup(model, messages, policy, tier, endpoint, native, deadline, base_url,
                                               api_key, client, catalog, params, True)
    return CompletionStream(*mod.stream_text(wrapped, adapter, req))._prime()


async def _astream(model: Any, messages: Any, policy: Any, tier: Any, endpoint: str, native: Any, deadline: Any,
                   base_url: Any, api_key: Any, client: Any, catalog: Any,
                   params: dict[str, Any]) -> AsyncCompletionStream:
    """Async twin of :func:`_stream`. Bedrock (botocore, no async client) streams on a worker thread."""
    from .catalog import ModelEntry as _E

    entry = model if isinstance(model, _E) else (catalog or default_catalog()).resolve(model)
    sync_sdk = entry.provider == "bedrock"   # genai: a fresh client's .aio (its pool is this loop's)
    mod, wrapped, adapter, req = _stream_setup(entry, messages, policy, tier, endpoint, native, deadline, base_url,
                                               api_key, client, catalog, params, sync_sdk)
    if entry.provider == "bedrock":
        handle, items, text_of = await asyncio.to_thread(mod.stream_text, wrapped, adapter, req)
        return await AsyncCompletionStream(handle, items, text_of, sync_items=True)._aprime()
    return await AsyncCompletionStream(*(await mod.astream_text(wrapped, adapter, req)))._aprime()


# -- wrap ---------------------------------------------------------------------------------------

#: SDK module prefix -> the provider package module with its ``wrap(client, policy, catalog)``.
_WRAPPERS = (("openai", "flextier.providers.openai.wire"), ("anthropic", "flextier.providers.anthropic.wire"),
             ("google.genai", "flextier.providers.gemini.wire"))


def wrap(client: Any, policy: Policy | None = None, *, catalog: Catalog | None = None) -> Any:
    """A copy of ``client`` (same SDK class) whose generation requests use flex with backoff
    and fallback per ``policy``; everything else behaves as before. ``client`` is unchanged."""
    pol = policy or Policy()
    mod = type(client).__module__
    for prefix, impl in _WRAPPERS:
        if mod.startswith(prefix):
            return importlib.import_module(impl).wrap(client, pol, catalog)
    meta = getattr(client, "meta", None)
    if meta is not None and getattr(getattr(meta, "service_model", None), "service_name", "") == "bedrock-runtime":
        from .providers.bedrock.hooks import wrap as bedrock_wrap
        return bedrock_wrap(client, pol, catalog)
    raise TypeError(f"flextier.wrap does not know {type(client).__module__}.{type(client).__name__}; "
                    "supported: OpenAI, AsyncOpenAI, google.genai Client (+ .aio), boto3 bedrock-runtime, "
                    "Anthropic, AsyncAnthropic")


def _dialects() -> list[Any]:
    from .providers.anthropic.wire import AnthropicDialect
    from .providers.gemini.wire import GeminiDialect
    from .providers.openai.wire import OpenAIDialect
    return [OpenAIDialect(), AnthropicDialect(), GeminiDialect()]


def http_client(policy: Policy | None = None, *, catalog: Catalog | None = None, **kw: Any) -> Any:
    """An ``httpx.Client`` whose generation requests (OpenAI, Anthropic, Gemini wire) use flex.

    ``kw`` goes to ``httpx.Client`` (``limits``, ``verify``, ``timeout``...). Hand it to an SDK
    or library that takes an HTTP client, and turn that SDK's retries off (``max_retries=0``):
    flextier's policy is then the only retry loop.
    """
    import httpx

    from .intercept import transport

    tkw = {k: kw.pop(k) for k in ("limits", "verify", "cert", "http2", "retries") if k in kw}
    inner = httpx.HTTPTransport(**tkw)
    kw.setdefault("timeout", None)
    return httpx.Client(transport=transport(inner, httpx, _dialects(), policy or Policy(), catalog), **kw)


def async_http_client(policy: Policy | None = None, *, catalog: Catalog | None = None, **kw: Any) -> Any:
    """Async twin of :func:`http_client` (an ``httpx.AsyncClient``)."""
    import httpx

    from .intercept import async_transport

    tkw = {k: kw.pop(k) for k in ("limits", "verify", "cert", "http2", "retries") if k in kw}
    inner = httpx.AsyncHTTPTransport(**tkw)
    kw.setdefault("timeout", None)
    return httpx.AsyncClient(transport=async_transport(inner, httpx, _dialects(), policy or Policy(), catalog),
                             **kw)
