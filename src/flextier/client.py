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

import importlib
from typing import Any, AsyncIterator, Iterator

from ._types import CallRequest, CallResult
from .catalog import Catalog, ModelEntry, default_catalog
from .intercept import Tally, info, totals
from .policy.fallback import Policy, acall_with_policy, call_with_policy
from .providers import get_adapter

__all__ = ["wrap", "info", "totals", "Tally", "complete", "acomplete", "http_client", "async_http_client"]


# -- complete ------------------------------------------------------------------------------

def _prepare(model: str | ModelEntry, messages: list[dict[str, Any]] | None, policy: Policy | None,
             tier: str | None, endpoint: str, native: dict[str, Any] | None, params: dict[str, Any],
             base_url: str | None, api_key: str | None, client: Any, catalog: Catalog | None):
    if params.pop("stream", False):
        raise TypeError("complete(stream=True) is not supported; use flextier.wrap(client) for streaming")
    entry = model if isinstance(model, ModelEntry) else (catalog or default_catalog()).resolve(model)
    pol = policy or Policy()
    if tier is not None:
        pol = pol.replace(tier=tier)
    if messages is None and native is None:
        raise TypeError("complete() needs messages=[...] or native={...}")
    req = CallRequest(model=entry, messages=messages, params=params, native=native, endpoint=endpoint)
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
             catalog: Catalog | None = None, **params: Any) -> CallResult:
    """One provider-neutral call on flex, with backoff and fallback per ``policy``.

    ``model`` is a catalog name or alias (``"gemini/gemini-3-flash"``); ``messages`` are
    OpenAI-style ``{"role", "content"}`` dicts; other keyword arguments (``max_tokens``,
    ``temperature``, ...) are translated per provider. ``endpoint="responses"`` uses the
    OpenAI Responses API. ``deadline`` is seconds from now by which the call must be done.
    Returns a :class:`CallResult` (``text``, ``raw`` = response JSON, ``tier`` served,
    ``usage``, ``cost``, ``standard_cost``, ``saving``, ``attempts``). Raises a
    :mod:`flextier.errors` class when the policy gives up.
    """
    entry, pol, req, adapter = _prepare(model, messages, policy, tier, endpoint, native, params,
                                        base_url, api_key, client, catalog)
    deadline_at = None if deadline is None else pol.clock() + deadline
    return _finish(call_with_policy(lambda t, to: adapter.send(req, t, to), pol, entry=entry,
                                    deadline_at=deadline_at))


async def acomplete(model: str | ModelEntry, messages: list[dict[str, Any]] | None = None, *,
                    policy: Policy | None = None, tier: str | None = None, endpoint: str = "chat",
                    native: dict[str, Any] | None = None, deadline: float | None = None,
                    base_url: str | None = None, api_key: str | None = None, client: Any = None,
                    catalog: Catalog | None = None, **params: Any) -> CallResult:
    """Async twin of :func:`complete`."""
    entry, pol, req, adapter = _prepare(model, messages, policy, tier, endpoint, native, params,
                                        base_url, api_key, client, catalog)
    deadline_at = None if deadline is None else pol.clock() + deadline
    return _finish(await acall_with_policy(lambda t, to: adapter.asend(req, t, to), pol, entry=entry,
                                           deadline_at=deadline_at))


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
