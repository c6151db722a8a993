"""Flex on every Bedrock call path: the transport engine as a botocore ``before-call`` hook.

Why a hook: boto3 is not httpx, but botocore emits ``before-call.bedrock-runtime.<Op>`` with
the serialized request right before it signs and sends it, and takes a ``(http, parsed)``
answer from the handler instead of sending. So :func:`wrap` re-creates the user's client with
botocore's retries off (:func:`~flextier.providers.bedrock.clone_without_retries`) and
registers one handler for ``Converse``, ``ConverseStream``, ``InvokeModel`` and
``InvokeModelWithResponseStream``; the handler runs the ONE policy loop
(:func:`flextier.policy.fallback.call_with_policy`), each attempt through the client's own
``_make_request`` (signing, sending and parsing are botocore's, re-signed per attempt).

Tier: Converse carries ``serviceTier: {"type": ...}`` in the JSON body; InvokeModel the
``X-Amzn-Bedrock-Service-Tier`` header (``flex``/``default``/``priority``). Either, set by the
caller to anything but flex, is the caller's choice and sent unchanged. The served tier is
the response's ``serviceTier`` or that header; usage is Converse's ``usage`` or, for Invoke,
the token-count headers / ``amazon-bedrock-invocationMetrics``. Streams are read ahead to
their first content event (fallback is possible only until then) and watched to the end.
"""
from __future__ import annotations

import functools
import io
import json
import threading
from typing import Any, Iterator, Mapping
from urllib.parse import unquote

from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from ..._types import AttemptOutcome, CallResult
from ...catalog import Catalog, default_catalog
from ...cost import Usage
from ...errors import ProviderError
from ...intercept import TOTALS, Recorder, cut_stream, flextier_headers, lookup, remember
from ...policy.fallback import Policy, call_with_policy
from ...tiers import normalize_tier
from ..base import TIMEOUT_MARGIN, served_tier
from ..wire import Call, StreamObserver, dumps
from . import TIER_HEADER, WIRE_TIER, BedrockAdapter, classify_bedrock, clone_without_retries, usage_from_body

__all__ = ["wrap", "OPERATIONS"]

OPERATIONS = {"Converse": ("converse", False), "ConverseStream": ("converse", True),
              "InvokeModel": ("invoke", False), "InvokeModelWithResponseStream": ("invoke", True)}
_INVOKE_TIER = {"flex": "flex", "standard": "default", "priority": "priority"}


def _explicit(raw: Any) -> str | None:
    if raw is None:
        return None
    t = normalize_tier(raw)
    return None if t == "flex" else (t if t in ("standard", "priority") else "standard")


def recognise(op: str, rd: Mapping[str, Any]) -> Call | None:
    kind, stream = OPERATIONS[op]
    path = str(rd.get("url_path") or "")
    model = unquote(path.split("/model/", 1)[1].rsplit("/", 1)[0]) if "/model/" in path else None
    headers = rd.get("headers") or {}
    if kind == "converse":
        try:
            body = json.loads(rd.get("body") or b"{}")
        except ValueError:
            return None
        return Call("bedrock", kind, model, stream, _explicit(body.get("serviceTier")), body)
    tier = next((v for k, v in headers.items() if k.lower() == TIER_HEADER), None)
    return Call("bedrock", kind, model, stream, _explicit(tier), None)


def attempt_dict(call: Call, tier: str, rd: dict[str, Any]) -> dict[str, Any]:
    out = dict(rd)
    if call.explicit is not None:
        return out
    if call.kind == "converse":
        b = {k: v for k, v in call.body.items() if k != "serviceTier"}
        if WIRE_TIER[tier]:
            b["serviceTier"] = dict(WIRE_TIER[tier])
        out["body"] = dumps(b)
    else:
        h = {k: v for k, v in (rd.get("headers") or {}).items() if k.lower() != TIER_HEADER}
        h["X-Amzn-Bedrock-Service-Tier"] = _INVOKE_TIER[tier]
        out["headers"] = h
    return out


def _cached(u: Any) -> int:
    if not isinstance(u, Mapping):
        return 0
    for k in ("cacheReadInputTokenCount", "cacheReadInputTokens", "cache_read_input_tokens"):
        if u.get(k):
            return int(u[k])
    return int(((u.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)


def invoke_usage(inp: Any, out: Any, usage: Any) -> Usage:
    """InvokeModel's bill: the token-count headers (or invocationMetrics), cached reads from the body."""
    i = int(inp or 0)
    return Usage(i, min(_cached(usage), i), int(out or 0), 0)


class EventObserver(StreamObserver):
    """Watches parsed Bedrock stream events (ConverseStream events, or Invoke ``chunk`` events)."""

    def observe(self, ev: Mapping[str, Any]) -> None:
        if self.call.kind == "converse":
            if "metadata" in ev:
                md = ev["metadata"]
                if md.get("usage"):
                    self.usage = usage_from_body(md["usage"])
                    self.usage_final = True   # the metadata event after messageStop is the bill
                if md.get("serviceTier") is not None:
                    self.served = served_tier(md["serviceTier"])
            if "messageStop" in ev:
                self.done = True
            if "contentBlockDelta" in ev:
                self.first = True
            return
        chunk = ev.get("chunk")
        if not isinstance(chunk, Mapping):
            return
        try:
            d = json.loads(chunk.get("bytes") or b"{}")
        except ValueError:
            return
        if not isinstance(d, dict):
            return
        if isinstance(d.get("usage"), Mapping):
            self._usage = d["usage"]
        m = d.get("amazon-bedrock-invocationMetrics")
        if isinstance(m, Mapping):
            self.usage = invoke_usage(m.get("inputTokenCount"), m.get("outputTokenCount"), getattr(self, "_usage", None))
            self.usage_final = self.done = True
        if "contentBlockDelta" in d or d.get("type") == "content_block_delta" or any(
                (c.get("delta") or {}).get("content") or c.get("text") for c in d.get("choices") or []
                if isinstance(c, Mapping)):
            self.first = True


class FlexEventStream:
    """A Bedrock event stream after the read-ahead: replays it, watches the rest, prices at the end."""

    def __init__(self, inner: Any, it: Iterator[Any] | None, buf: list[Any], obs: EventObserver, rec: Recorder) -> None:
        self._inner, self._it, self._buf, self._obs, self._rec = inner, it, buf, obs, rec

    def __iter__(self) -> Iterator[Any]:
        try:
            while self._buf:
                yield self._buf.pop(0)
            if self._it is not None:
                for ev in self._it:
                    self._obs.observe(ev)
                    yield ev
                if not self._obs.done:
                    raise cut_stream(self._obs, "bedrock")
        except ProviderError:
            raise
        except Exception as exc:
            err = classify_bedrock(exc, self._obs.tier)
            if err is None:
                raise
            raise err from exc
        finally:
            self._rec.finish()

    def close(self) -> None:
        self._rec.finish()
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Hook:
    def __init__(self, client: Any, policy: Policy, catalog: Catalog) -> None:
        self.client, self.policy, self.catalog = client, policy, catalog
        self._pool: Any = None
        self._lock = threading.Lock()

    def pool(self) -> Any:
        """Threads for attempts bounded by a total deadline (one per pooled connection)."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor
                    n = max(4, self.client.meta.config.max_pool_connections or 10)
                    self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="flextier-bedrock-hook")
        return self._pool

    def __call__(self, op: str, model: Any, params: dict[str, Any], context: Any, **_: Any) -> Any:
        call = recognise(op, params)
        if call is None:
            return None
        entry = lookup(self.catalog, "bedrock", call.model)
        pol = self.policy if call.explicit is None else self.policy.replace(tier=call.explicit)
        from botocore.client import apply_request_checksum, maybe_compress_request  # botocore's own steps

        def attempt(tier: str) -> AttemptOutcome:
            rd = attempt_dict(call, tier, params)
            maybe_compress_request(self.client.meta.config, rd, model)
            apply_request_checksum(rd)
            http, parsed = self.client._make_request(model, rd, context)  # noqa: SLF001
            if http.status_code >= 300:
                raise ClientError(parsed, op)
            return self._outcome(call, tier, http, parsed)

        def send(tier: str, timeout: float | None) -> AttemptOutcome:
            try:
                if timeout is None:
                    return attempt(tier)
                # botocore's timeouts are per socket read: the attempt's timeout bounds the whole
                # exchange (to a stream's first content event) on a worker thread, as the adapter
                # does (flextier/guard.py for the httpx SDKs); FutureTimeout classifies as Timeout
                return self.pool().submit(attempt, tier).result(timeout)
            except ProviderError:
                raise
            except Exception as exc:
                err = classify_bedrock(exc, tier)
                if err is None:
                    raise
                raise err from exc

        try:
            result = call_with_policy(send, pol, entry=entry)
        except ProviderError as err:
            TOTALS.fail(err, entry, self.client.meta.endpoint_url)
            raise
        return self._deliver(call, result)

    def _outcome(self, call: Call, tier: str, http: Any, parsed: dict[str, Any]) -> AttemptOutcome:
        headers = (parsed.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        if call.stream:
            obs = EventObserver(call, tier)
            key = "stream" if call.kind == "converse" else "body"
            inner = parsed[key]
            if call.kind == "invoke":
                obs.served = served_tier(headers.get(TIER_HEADER))
            it = iter(inner)
            buf: list[Any] = []
            rest: Any = it
            for ev in it:
                obs.observe(ev)
                buf.append(ev)
                if obs.first:
                    break
            else:
                rest = None
                if not obs.done:
                    raise cut_stream(obs, "bedrock")
            return AttemptOutcome(body={}, text="", served_tier=obs.served or "unknown", usage=obs.usage or Usage(),
                                  raw=(http, parsed, (key, inner, rest, buf, obs)))
        if call.kind == "converse":
            out = BedrockAdapter(None, None).outcome(parsed, tier)  # type: ignore[arg-type]
            out.raw = (http, parsed, None)
            return out
        data = parsed["body"].read()
        parsed["body"] = StreamingBody(io.BytesIO(data), len(data))
        try:
            d = json.loads(data)
        except ValueError:
            d = {}
        u = d.get("usage") if isinstance(d, dict) else None
        usage = invoke_usage(headers.get("x-amzn-bedrock-input-token-count"),
                             headers.get("x-amzn-bedrock-output-token-count"), u)
        return AttemptOutcome(body={}, text="", served_tier=served_tier(headers.get(TIER_HEADER)), usage=usage,
                              raw=(http, parsed, None))

    def _deliver(self, call: Call, result: CallResult) -> Any:
        http, parsed, streaming = result.raw
        result.raw = None
        meta = parsed.setdefault("ResponseMetadata", {})
        rid = meta.get("RequestId")
        if streaming is not None:
            key, inner, rest, buf, obs = streaming
            rec = Recorder(result, obs, self.client.meta.endpoint_url)
            parsed[key] = FlexEventStream(inner, rest, buf, obs, rec)
        else:
            TOTALS.add(result, self.client.meta.endpoint_url)
        serial = remember(result, rid)
        h = meta.setdefault("HTTPHeaders", {})
        for k, v in flextier_headers(result, serial):
            h[k] = v
            try:
                http.headers[k] = v
            except Exception:  # noqa: BLE001 - a read-only header map: the parsed copy is enough
                pass
        return http, parsed


def wrap(client: Any, policy: Policy | None = None, catalog: Catalog | None = None) -> Any:
    """:func:`flextier.wrap` for a boto3/botocore ``bedrock-runtime`` client: a re-created client
    (same class, region, endpoint, config and credentials; retries off) with the hook registered."""
    pol = policy or Policy()
    new = clone_without_retries(client, read_timeout=pol.flex_timeout + TIMEOUT_MARGIN,
                                max_connections=max(10, client.meta.config.max_pool_connections or 10))
    hook = _Hook(new, pol, catalog or default_catalog())
    for op in OPERATIONS:
        new.meta.events.register(f"before-call.bedrock-runtime.{op}", functools.partial(hook, op),
                                 unique_id=f"flextier-{op}")
    return new




# -- complete(stream=True) --------------------------------------------------------------------------

def _text(event: Any) -> str | None:
    d = event.get("contentBlockDelta") if isinstance(event, dict) else None
    return ((d or {}).get("delta") or {}).get("text") or None


def stream_text(client: Any, adapter: Any, req: Any) -> tuple[Any, Any, Any]:
    """``complete(stream=True)`` on Bedrock: ``converse_stream`` through a wrapped client (the
    hook), the request the adapter builds minus its tier (the hook writes each attempt's)."""
    kw = adapter.build(req, "standard")
    kw.pop("serviceTier", None)
    r = client.converse_stream(**kw)
    return r, r["stream"], _text
