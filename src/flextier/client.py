"""The two ways users call flex without writing retry code: ``wrap()`` and ``complete()``.

``wrap(client)`` returns a proxy of an OpenAI / AsyncOpenAI, google-genai ``Client`` (or
its ``.aio``), boto3 ``bedrock-runtime`` or Anthropic / AsyncAnthropic client. The methods
users already call (``chat.completions.create``, ``responses.create``,
``models.generate_content[_stream]``, ``converse[_stream]``, ``messages.create``) go to
flex with a long timeout, are retried with backoff and fall back to standard per the
:class:`~flextier.policy.fallback.Policy`, and return the SDK's own types. Everything
else passes through to the original client untouched (with its own retries).

Why a proxy instead of monkey-patching: the user's client keeps working as before, and
the intercepted calls use a *copy* of it with the SDK's retries off
(``with_options(max_retries=0)`` for OpenAI/Anthropic; a re-created botocore client for
Bedrock; google-genai does not retry unless configured, and per-call
``retry_options(attempts=1)`` is forced if it was) so flextier's loop is the only loop.

``info(response)`` returns a :class:`~flextier._types.CallResult` for a response (or
stream) a wrapped client returned: served tier, attempts, cost, standard cost, saving.
It is kept in a side table keyed by the object (cleared when the object is collected),
so the SDK type is untouched. Bedrock responses are plain dicts, which cannot be weakly
referenced, so wrapped ``converse`` returns a ``dict`` subclass (:class:`FlexResponse`).

Errors: a wrapped call that gives up raises a :mod:`flextier.errors` class (with the SDK
exception as ``__cause__`` and the attempts as ``.attempts``), the same as ``complete()``.

Streaming: a flex stream may fall back only until its first token arrives (the wrapper
reads ahead to it); after that, errors surface to the caller as taxonomy errors. Usage
and cost of a stream are known once the provider's final usage arrives (its last event);
until then, and for good when the stream is cut or abandoned before it, ``info(stream)``
has ``usage``, ``cost`` and ``standard_cost`` None ("unknown"), never 0. A wrapped OpenAI
Chat stream asks for usage itself (``stream_options.include_usage``) and, unless the caller
asked for it, hides the extra usage-only chunk and the ``usage: null`` field the option
adds to every chunk, so the caller sees the chunks it would have seen and the cost is exact.
"""
from __future__ import annotations

import weakref
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

from ._types import AttemptOutcome, CallRequest, CallResult
from .catalog import Catalog, ModelEntry, default_catalog
from .cost import Usage, price_usage
from .errors import ProviderError, Transient
from .policy.fallback import Policy, acall_with_policy, call_with_policy
from .providers import get_adapter
from .tiers import normalize_tier

__all__ = ["wrap", "info", "complete", "acomplete", "FlexResponse", "FlexStream", "AsyncFlexStream"]

# -- info side table -----------------------------------------------------------------------

_INFO: dict[int, CallResult] = {}


def _remember(obj: Any, result: CallResult) -> None:
    key = id(obj)
    try:
        weakref.finalize(obj, _INFO.pop, key, None)
    except TypeError:  # not weakly referenceable: nothing to key safely on
        return
    _INFO[key] = result


def info(response: Any) -> CallResult | None:
    """What happened behind a response (or stream) from a wrapped client, or a CallResult as is.

    Returns None for objects flextier did not produce.
    """
    if isinstance(response, CallResult):
        return response
    return _INFO.get(id(response))


class FlexResponse(dict):
    """A Bedrock ``converse`` response (a plain ``dict`` to every consumer) that ``info()`` can key on."""


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


# -- wrap: per-provider specifics ------------------------------------------------------------

def _synthetic_entry(provider: str, model: str) -> ModelEntry:
    """A model the catalog does not know: try flex (the provider decides), price unknown."""
    return ModelEntry(name=f"{provider}/{model}", provider=provider, model_id=model, aliases=(),
                      supports_flex=provider != "anthropic", supports_batch=False,
                      prices={"standard": None}, cache_discount_stacks={}, source="unknown", source_date="")


def _lookup(catalog: Catalog, provider: str, model: str | None) -> ModelEntry:
    if not model:
        return _synthetic_entry(provider, "unknown")
    e = catalog.find_wire(provider, model)
    if e is None:
        try:
            e = catalog.resolve(f"{provider}/{model}")
        except Exception:  # noqa: BLE001 - unknown models are allowed through wrap()
            e = None
    return e or _synthetic_entry(provider, model)


class _Observer:
    """Watches stream events: first token, served tier, usage, in-stream errors.

    ``usage`` may be partial while the stream runs (Anthropic's ``message_start`` counts one
    output token, Gemini's chunks count what was sent so far); ``usage_final`` says it came
    from the event that carries the bill, and only then is a stream priced.
    """

    served: str | None = None
    usage: Usage | None = None
    usage_final: bool = False     # usage came from the provider's final (billing) event
    done: bool = False            # saw the provider's end-of-message event

    def __init__(self, tier: str) -> None:
        self.tier = tier

    def observe(self, ev: Any) -> bool:
        """Update state; return True if ``ev`` carries the first token (or any token)."""
        return True

    def hidden(self, ev: Any) -> bool:
        """True for an event flextier asked for itself that the caller must not see."""
        return False

    def error(self, ev: Any) -> ProviderError | None:
        return None


class _Spec:
    """What wrap() needs to know about one provider's SDK."""

    provider = ""
    tier_kw: str | None = None

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def entry(self, kwargs: Mapping[str, Any]) -> ModelEntry:
        return _lookup(self.catalog, self.provider, kwargs.get("model"))

    def user_tier(self, kwargs: Mapping[str, Any]) -> str | None:
        """The tier the caller asked for explicitly (canonical), or None."""
        if self.tier_kw and kwargs.get(self.tier_kw) is not None:
            return normalize_tier(kwargs[self.tier_kw]) or "standard"
        return None

    def prepare(self, kwargs: dict[str, Any], tier: str, timeout: float | None, keep_user_tier: bool) -> dict:
        raise NotImplementedError

    def outcome(self, resp: Any, tier: str) -> AttemptOutcome:
        raise NotImplementedError

    def classify(self, exc: BaseException, tier: str) -> ProviderError | None:
        raise NotImplementedError

    def observer(self, tier: str, endpoint: str) -> _Observer:
        return _Observer(tier)

    def stream_kwargs(self, kw: dict[str, Any], endpoint: str, obs: _Observer) -> dict[str, Any]:
        """Change a streaming call's arguments (OpenAI Chat asks for usage); default: as is."""
        return kw


# OpenAI ---------------------------------------------------------------------------------

class _OpenAIChatObserver(_Observer):
    hide_usage = False            # flextier added include_usage: hide what the option adds

    def observe(self, ev: Any) -> bool:
        st = getattr(ev, "service_tier", None)
        if st is not None:
            from .providers.base import served_tier
            self.served = served_tier(st)
        u = getattr(ev, "usage", None)
        if u is not None:
            from .providers.openai import usage_from_body
            self.usage = usage_from_body(u.model_dump())
            self.usage_final = True   # Chat sends usage once, in the last chunk
        elif self.hide_usage:
            _unset(ev, "usage")       # the option adds "usage": null to every chunk
        tok = False
        for c in getattr(ev, "choices", None) or []:
            if c.finish_reason:
                self.done = True
            d = c.delta
            if d is not None and (d.content or d.tool_calls or getattr(d, "refusal", None)):
                tok = True
        return tok

    def hidden(self, ev: Any) -> bool:
        return self.hide_usage and not (getattr(ev, "choices", None) or []) and getattr(ev, "usage", None) is not None


def _unset(ev: Any, name: str) -> None:
    """Make a pydantic SDK object look as if ``name`` never came on the wire (``to_dict()`` and
    ``model_dump(exclude_unset=True)`` leave it out, as they would without include_usage)."""
    fs = getattr(ev, "__pydantic_fields_set__", None)
    if isinstance(fs, set):
        fs.discard(name)


class _OpenAIResponsesObserver(_Observer):
    def observe(self, ev: Any) -> bool:
        typ = getattr(ev, "type", "") or ""
        resp = getattr(ev, "response", None)
        if resp is not None and typ in ("response.completed", "response.incomplete", "response.created",
                                        "response.in_progress"):
            from .providers.base import served_tier
            st = getattr(resp, "service_tier", None)
            if st is not None and (typ != "response.created" or self.served is None):
                self.served = served_tier(st)
            if resp.usage is not None:
                from .providers.openai import usage_from_body
                self.usage = usage_from_body(resp.usage.model_dump())
                self.usage_final = typ in ("response.completed", "response.incomplete")
        if typ in ("response.completed", "response.incomplete", "response.failed"):
            self.done = True
        return typ.endswith(".delta")

    def error(self, ev: Any) -> ProviderError | None:
        typ = getattr(ev, "type", "")
        if typ not in ("error", "response.failed"):
            return None
        from .providers.openai import error_from_event
        return error_from_event(ev.model_dump(), self.tier)


class _OpenAISpec(_Spec):
    provider = "openai"
    tier_kw = "service_tier"

    def prepare(self, kwargs, tier, timeout, keep_user_tier):
        from .providers.openai import WIRE_TIER
        kw = dict(kwargs)
        if not keep_user_tier:
            kw["service_tier"] = WIRE_TIER[tier]
        if timeout is not None and "timeout" not in kwargs:
            kw["timeout"] = timeout
        return kw

    def outcome(self, resp, tier):
        from .providers.base import served_tier
        from .providers.openai import error_from_event, usage_from_body
        if getattr(resp, "object", None) == "response" and getattr(resp, "status", None) == "failed":
            err = error_from_event(resp.model_dump(), tier)
            if err is not None:
                raise err
        u = getattr(resp, "usage", None)
        if getattr(resp, "choices", None) is not None:
            text = (resp.choices[0].message.content or "") if resp.choices else ""
        else:
            text = getattr(resp, "output_text", "") or ""
        return AttemptOutcome(body={}, text=text, served_tier=served_tier(getattr(resp, "service_tier", None)),
                              usage=usage_from_body(u.model_dump() if u is not None else None), raw=resp)

    def classify(self, exc, tier):
        from .providers.openai import classify_openai
        return classify_openai(exc, tier)

    def observer(self, tier, endpoint):
        return _OpenAIResponsesObserver(tier) if endpoint == "responses" else _OpenAIChatObserver(tier)

    def stream_kwargs(self, kw: dict[str, Any], endpoint: str, obs: _Observer) -> dict[str, Any]:
        """A Chat stream asks for usage itself; the observer hides what the caller did not ask for."""
        if endpoint != "chat" or not isinstance(obs, _OpenAIChatObserver):
            return kw
        so = kw.get("stream_options")
        so = dict(so) if isinstance(so, Mapping) else {}
        if so.get("include_usage") is True:
            return kw
        obs.hide_usage = True
        return {**kw, "stream_options": {**so, "include_usage": True}}


# Anthropic ------------------------------------------------------------------------------

class _AnthropicObserver(_Observer):
    _start: dict | None = None

    def observe(self, ev: Any) -> bool:
        typ = getattr(ev, "type", "")
        from .providers.anthropic import usage_from_body
        from .providers.base import served_tier
        if typ == "message_start":
            u = ev.message.usage.model_dump()
            self._start = u
            self.served = served_tier(u.get("service_tier"))
            self.usage = usage_from_body(u)
        elif typ == "message_delta" and getattr(ev, "usage", None) is not None:
            u = dict(self._start or {})
            u.update({k: v for k, v in ev.usage.model_dump().items() if v is not None})
            self.usage = usage_from_body(u)
            self.usage_final = True   # message_start counted one output token; this is the bill
        elif typ == "message_stop":
            self.done = True
        return typ == "content_block_delta"


class _AnthropicSpec(_Spec):
    provider = "anthropic"
    tier_kw = "service_tier"

    def user_tier(self, kwargs):
        v = kwargs.get("service_tier")
        if v is None:
            return None
        return "priority" if v == "auto" else "standard"

    def prepare(self, kwargs, tier, timeout, keep_user_tier):
        kw = dict(kwargs)
        if not keep_user_tier and tier == "priority":
            kw["service_tier"] = "auto"
        if timeout is not None and "timeout" not in kwargs:
            kw["timeout"] = timeout
        return kw

    def outcome(self, resp, tier):
        from .providers.anthropic import usage_from_body
        from .providers.base import served_tier
        u = resp.usage.model_dump() if getattr(resp, "usage", None) is not None else {}
        text = "".join(getattr(b, "text", "") for b in (resp.content or []) if getattr(b, "type", "") == "text")
        return AttemptOutcome(body={}, text=text, served_tier=served_tier(u.get("service_tier")),
                              usage=usage_from_body(u), raw=resp)

    def classify(self, exc, tier):
        from .providers.anthropic import classify_anthropic
        return classify_anthropic(exc, tier)

    def observer(self, tier, endpoint):
        return _AnthropicObserver(tier)


# Gemini ---------------------------------------------------------------------------------

class _GeminiObserver(_Observer):
    def observe(self, ev: Any) -> bool:
        from .providers.gemini import served_from, usage_from_sdk
        um = getattr(ev, "usage_metadata", None)
        http = getattr(ev, "sdk_http_response", None)
        headers = getattr(http, "headers", None)
        ust = getattr(um, "service_tier", None)
        if headers or ust is not None:
            s = served_from(headers, ust)
            if s != "unknown" or self.served is None:
                self.served = s
        tok = False
        for c in getattr(ev, "candidates", None) or []:
            if c.finish_reason is not None:
                self.done = True
            for p in ((c.content.parts if c.content else None) or []):
                if p.text or p.function_call:
                    tok = True
        if um is not None:
            self.usage = usage_from_sdk(um)
            # counts so far on every chunk; from the chunk with the finish reason on, it is the bill
            self.usage_final = self.done
        return tok


class _GeminiSpec(_Spec):
    provider = "gemini"

    def __init__(self, catalog: Catalog, user_client: Any) -> None:
        super().__init__(catalog)
        api = getattr(user_client, "_api_client", None)
        opts = getattr(api, "_http_options", None)
        self.force_no_retry = getattr(opts, "retry_options", None) is not None

    def _config(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        cfg = kwargs.get("config")
        if cfg is None:
            return {}
        if isinstance(cfg, dict):
            return dict(cfg)
        return cfg.model_dump(exclude_none=True)

    def entry(self, kwargs):
        return _lookup(self.catalog, self.provider, str(kwargs.get("model", "")).removeprefix("models/"))

    def user_tier(self, kwargs):
        v = self._config(kwargs).get("service_tier")
        if v is None:
            return None
        return normalize_tier(getattr(v, "value", v)) or "standard"

    def prepare(self, kwargs, tier, timeout, keep_user_tier):
        from google.genai import types as gtypes
        from .providers.gemini import WIRE_TIER
        kw = dict(kwargs)
        cfg = self._config(kwargs)
        if not keep_user_tier:
            cfg.pop("service_tier", None)
            if WIRE_TIER[tier]:
                cfg["service_tier"] = WIRE_TIER[tier]
        http = cfg.get("http_options") or {}
        http = dict(http) if isinstance(http, dict) else http.model_dump(exclude_none=True)
        if timeout is not None and http.get("timeout") is None:
            http["timeout"] = max(1, int(timeout * 1000))
        if self.force_no_retry:
            http["retry_options"] = {"attempts": 1}
        if http:
            cfg["http_options"] = http
        kw["config"] = gtypes.GenerateContentConfig.model_validate(cfg)
        return kw

    def outcome(self, resp, tier):
        from .providers.gemini import served_from, usage_from_sdk
        um = resp.usage_metadata
        headers = resp.sdk_http_response.headers if resp.sdk_http_response is not None else None
        text = ""
        if resp.candidates and resp.candidates[0].content and resp.candidates[0].content.parts:
            text = "".join(p.text or "" for p in resp.candidates[0].content.parts if not p.thought)
        return AttemptOutcome(body={}, text=text, served_tier=served_from(headers, getattr(um, "service_tier", None)),
                              usage=usage_from_sdk(um), headers=dict(headers or {}), raw=resp)

    def classify(self, exc, tier):
        from .providers.gemini import classify_gemini
        return classify_gemini(exc, tier)

    def observer(self, tier, endpoint):
        return _GeminiObserver(tier)


# Bedrock --------------------------------------------------------------------------------

class _BedrockObserver(_Observer):
    def observe(self, ev: Any) -> bool:
        if "metadata" in ev:
            from .providers.bedrock import usage_from_body
            from .providers.base import served_tier
            md = ev["metadata"]
            if md.get("usage"):
                self.usage = usage_from_body(md["usage"])
                self.usage_final = True   # the metadata event after messageStop is the bill
            if md.get("serviceTier") is not None:
                self.served = served_tier(md["serviceTier"])
        if "messageStop" in ev:
            self.done = True
        return "contentBlockDelta" in ev


class _BedrockSpec(_Spec):
    provider = "bedrock"

    def entry(self, kwargs):
        return _lookup(self.catalog, self.provider, kwargs.get("modelId"))

    def user_tier(self, kwargs):
        v = kwargs.get("serviceTier")
        if v is None:
            return None
        return normalize_tier(v) or "standard"

    def prepare(self, kwargs, tier, timeout, keep_user_tier):
        from .providers.bedrock import WIRE_TIER
        kw = dict(kwargs)
        if not keep_user_tier:
            kw.pop("serviceTier", None)
            if WIRE_TIER[tier]:
                kw["serviceTier"] = dict(WIRE_TIER[tier])
        return kw

    def outcome(self, resp, tier):
        from .providers.bedrock import served_from, text_from_body, usage_from_body
        headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        return AttemptOutcome(body={}, text=text_from_body(resp), served_tier=served_from(resp, headers),
                              usage=usage_from_body(resp.get("usage")), headers=dict(headers),
                              raw=FlexResponse(resp))

    def classify(self, exc, tier):
        from .providers.bedrock import classify_bedrock
        return classify_bedrock(exc, tier)

    def observer(self, tier, endpoint):
        return _BedrockObserver(tier)


# -- streams ------------------------------------------------------------------------------

def _finalize_stream(result: CallResult, obs: _Observer) -> None:
    if obs.served is not None:
        result.tier = obs.served
        if result.attempts:
            result.attempts[-1].served_tier = obs.served
    if obs.usage is not None and obs.usage_final:
        result.usage = obs.usage
        c = price_usage(obs.usage, result.model, result.tier)
        result.cost, result.standard_cost = c.cost, c.standard_cost
    else:  # not consumed yet, cut, or abandoned before the bill arrived: unknown, never $0
        result.usage = None
        result.cost = result.standard_cost = None


def _check_complete(obs: _Observer) -> None:
    """A stream that ends without the provider's end-of-message event was cut off."""
    if not obs.done:
        raise Transient("the stream ended before the provider finished the message", tier=obs.tier,
                        provider=None, possibly_billed=True)


class _StreamBase:
    """What the sync and async streams share: per-event checks, error translation, the result."""

    def __init__(self, inner: Any, buffered: list[Any], obs: _Observer,
                 classify: Callable[[BaseException, str], ProviderError | None]) -> None:
        self._inner, self._buf, self._obs, self._classify = inner, buffered, obs, classify
        self._result: CallResult | None = None

    def _check(self, ev: Any) -> Any:
        """Account for one event; an in-stream error event is raised as its taxonomy class."""
        self._obs.observe(ev)
        err = self._obs.error(ev)
        if err is not None:
            raise err
        return ev

    def _translate(self, exc: Exception) -> None:
        """Re-raise an SDK or transport exception as a :mod:`flextier.errors` class when it is one."""
        if isinstance(exc, ProviderError):
            raise exc
        err = self._classify(exc, self._obs.tier)
        if err is None:
            raise exc
        raise err from exc

    def _finish(self) -> None:
        if self._result is not None:
            _finalize_stream(self._result, self._obs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FlexStream(_StreamBase):
    """A sync stream from a wrapped client: yields the SDK's own events; attributes pass through.

    Events read ahead (up to the first token) are replayed first. Errors after that are
    raised as :mod:`flextier.errors` classes; they are never retried.
    """

    def __init__(self, inner: Any, it: Iterator[Any], buffered: list[Any], obs: _Observer,
                 classify: Callable[[BaseException, str], ProviderError | None]) -> None:
        super().__init__(inner, buffered, obs, classify)
        self._it = it

    def __iter__(self) -> Iterator[Any]:
        try:
            while self._buf:
                yield self._buf.pop(0)
            for ev in self._it:
                ev = self._check(ev)
                if not self._obs.hidden(ev):
                    yield ev
            _check_complete(self._obs)
        except Exception as exc:
            self._translate(exc)
        finally:
            self._finish()

    def __enter__(self) -> "FlexStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class AsyncFlexStream(_StreamBase):
    """Async twin of :class:`FlexStream`."""

    def __init__(self, inner: Any, it: AsyncIterator[Any], buffered: list[Any], obs: _Observer,
                 classify: Callable[[BaseException, str], ProviderError | None]) -> None:
        super().__init__(inner, buffered, obs, classify)
        self._it = it

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            while self._buf:
                yield self._buf.pop(0)
            async for ev in self._it:
                ev = self._check(ev)
                if not self._obs.hidden(ev):
                    yield ev
            _check_complete(self._obs)
        except Exception as exc:
            self._translate(exc)
        finally:
            self._finish()

    async def __aenter__(self) -> "AsyncFlexStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        close = getattr(self._inner, "close", None) or getattr(self._inner, "aclose", None)
        if close is not None:
            r = close()
            if hasattr(r, "__await__"):
                await r


# -- the engine ---------------------------------------------------------------------------

class _Engine:
    """Runs one wrapped call through the policy loop."""

    def __init__(self, spec: _Spec, policy: Policy) -> None:
        self.spec = spec
        self.policy = policy

    def _setup(self, kwargs: dict[str, Any]) -> tuple[ModelEntry, Policy, bool]:
        entry = self.spec.entry(kwargs)
        pol = self.policy
        ut = self.spec.user_tier(kwargs)
        if ut is not None and ut != "flex":
            pol = pol.replace(tier=ut if ut in ("standard", "priority") else "standard")
        return entry, pol, ut is not None and ut != "flex"

    def _classified(self, exc: Exception, tier: str) -> ProviderError:
        err = self.spec.classify(exc, tier)
        if err is None:
            raise exc
        return err

    def call(self, method: Callable[[str], Callable[..., Any]], kwargs: dict[str, Any], *,
             stream: bool = False, endpoint: str = "") -> Any:
        entry, pol, keep = self._setup(kwargs)
        spec = self.spec

        def send(tier: str, timeout: float | None) -> AttemptOutcome:
            kw = spec.prepare(kwargs, tier, timeout, keep)
            obs = spec.observer(tier, endpoint)
            if stream:
                kw = spec.stream_kwargs(kw, endpoint, obs)
            try:
                resp = method(tier)(**kw)
                if not stream:
                    return spec.outcome(resp, tier)
                inner = resp
                src = resp["stream"] if isinstance(resp, dict) else resp
                it = iter(src)
                buf: list[Any] = []
                for ev in it:
                    first = obs.observe(ev)
                    err = obs.error(ev)
                    if err is not None:
                        raise err
                    if not obs.hidden(ev):
                        buf.append(ev)
                    if first:
                        break
                else:
                    _check_complete(obs)  # ended (or was cut) before any token: retryable
                fs = FlexStream(src, it, buf, obs, spec.classify)
                if isinstance(inner, dict):
                    inner = FlexResponse({**inner, "stream": fs})
                else:
                    inner = fs
                return AttemptOutcome(body={}, text="", served_tier=obs.served or "unknown",
                                      usage=obs.usage or Usage(), raw=(inner, fs))
            except ProviderError:
                raise
            except Exception as exc:
                raise self._classified(exc, tier) from exc

        result = call_with_policy(send, pol, entry=entry)
        return self._deliver(result, stream)

    async def acall(self, method: Callable[[str], Callable[..., Any]], kwargs: dict[str, Any], *,
                    stream: bool = False, endpoint: str = "") -> Any:
        entry, pol, keep = self._setup(kwargs)
        spec = self.spec

        async def send(tier: str, timeout: float | None) -> AttemptOutcome:
            kw = spec.prepare(kwargs, tier, timeout, keep)
            obs = spec.observer(tier, endpoint)
            if stream:
                kw = spec.stream_kwargs(kw, endpoint, obs)
            try:
                resp = await method(tier)(**kw)
                if not stream:
                    return spec.outcome(resp, tier)
                it = resp.__aiter__()
                buf: list[Any] = []
                async for ev in it:
                    first = obs.observe(ev)
                    err = obs.error(ev)
                    if err is not None:
                        raise err
                    if not obs.hidden(ev):
                        buf.append(ev)
                    if first:
                        break
                else:
                    _check_complete(obs)  # ended (or was cut) before any token: retryable
                fs = AsyncFlexStream(resp, it, buf, obs, spec.classify)
                return AttemptOutcome(body={}, text="", served_tier=obs.served or "unknown",
                                      usage=obs.usage or Usage(), raw=(fs, fs))
            except ProviderError:
                raise
            except Exception as exc:
                raise self._classified(exc, tier) from exc

        result = await acall_with_policy(send, pol, entry=entry)
        return self._deliver(result, stream)

    @staticmethod
    def _deliver(result: CallResult, stream: bool) -> Any:
        if stream:
            obj, fs = result.raw
            fs._result = result
            result.raw = obj
            _finalize_stream(result, fs._obs)  # unknown until the final usage (read ahead, or later)
            _remember(obj, result)
            if fs is not obj:
                _remember(fs, result)
            return obj
        obj = result.raw
        _remember(obj, result)
        return obj


# -- the proxy ----------------------------------------------------------------------------

class _Proxy:
    """Attribute proxy: intercepted paths call flextier, everything else is the original."""

    __slots__ = ("_target", "_path", "_hooks", "__weakref__")

    def __init__(self, target: Any, path: str, hooks: dict[str, Callable[..., Any]]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_hooks", hooks)

    def __getattr__(self, name: str) -> Any:
        full = f"{self._path}.{name}" if self._path else name
        hook = self._hooks.get(full)
        if hook is not None:
            return hook
        val = getattr(self._target, name)
        prefix = full + "."
        if any(h.startswith(prefix) for h in self._hooks):
            return _Proxy(val, full, self._hooks)
        return val

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __dir__(self) -> list[str]:
        return dir(self._target)

    def __repr__(self) -> str:
        return f"<flextier.wrap {type(self._target).__module__}.{type(self._target).__name__}>"


class WrappedClient(_Proxy):
    """What :func:`wrap` returns. ``.flextier_policy`` is the policy; ``.flextier_unwrap()`` the original."""

    __slots__ = ("flextier_policy",)

    def __init__(self, target: Any, hooks: dict[str, Callable[..., Any]], policy: Policy) -> None:
        super().__init__(target, "", hooks)
        object.__setattr__(self, "flextier_policy", policy)

    def flextier_unwrap(self) -> Any:
        return self._target

    def __enter__(self) -> "WrappedClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        close = getattr(self._target, "close", None)
        if close is not None:
            close()


def _sync_hook(engine: _Engine, fn_of_tier: Callable[[str], Callable[..., Any]], endpoint: str = "",
               always_stream: bool = False) -> Callable[..., Any]:
    def hook(*args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("flextier-wrapped methods take keyword arguments only (as the SDK methods do)")
        return engine.call(fn_of_tier, kwargs, stream=always_stream or bool(kwargs.get("stream")), endpoint=endpoint)
    return hook


def _async_hook(engine: _Engine, fn_of_tier: Callable[[str], Callable[..., Any]], endpoint: str = "",
                always_stream: bool = False) -> Callable[..., Any]:
    async def hook(*args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("flextier-wrapped methods take keyword arguments only (as the SDK methods do)")
        return await engine.acall(fn_of_tier, kwargs, stream=always_stream or bool(kwargs.get("stream")),
                                  endpoint=endpoint)
    return hook


def wrap(client: Any, policy: Policy | None = None, *, catalog: Catalog | None = None) -> Any:
    """Wrap an SDK client so its generation calls use flex with backoff and fallback.

    Supported: ``openai.OpenAI``/``AsyncOpenAI`` (``chat.completions.create``,
    ``responses.create``), ``google.genai.Client`` and ``Client.aio``
    (``models.generate_content``, ``models.generate_content_stream``), boto3
    ``bedrock-runtime`` (``converse``, ``converse_stream``), ``anthropic.Anthropic``/
    ``AsyncAnthropic`` (``messages.create``). Other attributes pass through to ``client``.
    """
    pol = policy or Policy()
    cat = catalog or default_catalog()
    mod = type(client).__module__

    if mod.startswith("openai"):
        import openai
        if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
            raise TypeError(f"cannot wrap {type(client).__name__}; wrap the OpenAI/AsyncOpenAI client itself")
        from .providers.openai import quiet as _quiet
        quiet = _quiet(client)
        eng = _Engine(_OpenAISpec(cat), pol)
        mk = _async_hook if isinstance(client, openai.AsyncOpenAI) else _sync_hook
        hooks = {"chat.completions.create": mk(eng, lambda t: quiet.chat.completions.create, "chat"),
                 "responses.create": mk(eng, lambda t: quiet.responses.create, "responses")}
        return WrappedClient(client, hooks, pol)

    if mod.startswith("anthropic"):
        import anthropic
        if not isinstance(client, (anthropic.Anthropic, anthropic.AsyncAnthropic)):
            raise TypeError(f"cannot wrap {type(client).__name__}; wrap the Anthropic/AsyncAnthropic client itself")
        from .providers.anthropic import quiet as _quiet
        quiet = _quiet(client)
        eng = _Engine(_AnthropicSpec(cat), pol)
        mk = _async_hook if isinstance(client, anthropic.AsyncAnthropic) else _sync_hook
        return WrappedClient(client, {"messages.create": mk(eng, lambda t: quiet.messages.create)}, pol)

    if mod.startswith("google.genai"):
        from google.genai import client as gclient
        if isinstance(client, gclient.AsyncClient):
            eng = _Engine(_GeminiSpec(cat, client), pol)
            hooks = {"models.generate_content": _async_hook(eng, lambda t: client.models.generate_content),
                     "models.generate_content_stream": _async_hook(
                         eng, lambda t: client.models.generate_content_stream, always_stream=True)}
            return WrappedClient(client, hooks, pol)
        if isinstance(client, gclient.Client):
            eng = _Engine(_GeminiSpec(cat, client), pol)
            hooks = {
                "models.generate_content": _sync_hook(eng, lambda t: client.models.generate_content),
                "models.generate_content_stream": _sync_hook(
                    eng, lambda t: client.models.generate_content_stream, always_stream=True),
                "aio.models.generate_content": _async_hook(eng, lambda t: client.aio.models.generate_content),
                "aio.models.generate_content_stream": _async_hook(
                    eng, lambda t: client.aio.models.generate_content_stream, always_stream=True),
            }
            return WrappedClient(client, hooks, pol)
        raise TypeError(f"cannot wrap {type(client).__name__}; wrap google.genai.Client or Client.aio")

    meta = getattr(client, "meta", None)
    if meta is not None and getattr(getattr(meta, "service_model", None), "service_name", "") == "bedrock-runtime":
        from .providers.bedrock import BedrockAdapter
        tr = BedrockAdapter.make_transport(base_url=None, api_key=None, client=client, timeouts=pol.timeouts(),
                                           max_connections=max(10, client.meta.config.max_pool_connections or 10))
        eng = _Engine(_BedrockSpec(cat), pol)
        hooks = {"converse": _sync_hook(eng, lambda t: tr.client(t).converse),
                 "converse_stream": _sync_hook(eng, lambda t: tr.client(t).converse_stream, always_stream=True)}
        return WrappedClient(client, hooks, pol)

    raise TypeError(f"flextier.wrap does not know {type(client).__module__}.{type(client).__name__}; "
                    "supported: OpenAI, AsyncOpenAI, google.genai Client (+ .aio), boto3 bedrock-runtime, "
                    "Anthropic, AsyncAnthropic")

