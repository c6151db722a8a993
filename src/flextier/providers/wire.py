"""What a provider dialect tells the transport engine (:mod:`flextier.intercept`), and SSE framing.

Why a dialect object per provider: the engine sits under the SDKs, at the HTTP transport, so
it sees bytes, not SDK calls. What those bytes mean (is this a generation request? where does
the tier go? what did the response say it served and used? what does this error body mean?)
differs per provider, and lives in that provider's package (``providers/<p>/wire.py``), one
:class:`Dialect` subclass each. The engine itself knows none of it. See docs/providers.md
("Wrapping at the transport").

Streams are watched, not parsed into SDK objects: a :class:`StreamObserver` is fed the
decoded response bytes as they arrive, keeps what the engine needs (first content token,
served tier, usage, the provider's end-of-message, an in-stream error) and returns the bytes
the caller should see (the same bytes, except where flextier asked the provider for
something the caller did not ask for, e.g. OpenAI's usage chunk).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..cost import Usage
from ..errors import ProviderError

__all__ = ["as_sdk_error", "Call", "Reply", "Dialect", "StreamObserver", "SSEObserver", "KEEP", "DROP", "dumps",
           "request_object", "reply_object", "json_or_text"]


def dumps(body: Any) -> bytes:
    """Compact JSON, as the SDKs send it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Call:
    """One recognised generation request.

    ``explicit`` is the canonical tier the caller chose on the wire (``standard``/``priority``):
    honoured as is, no flex and no fallback. None means "not set" (a missing field, the SDKs'
    ``NOT_GIVEN``/``omit``) or ``flex``: flextier's policy decides.
    """

    provider: str
    kind: str                       # chat | responses | generate | messages | converse | invoke
    model: str | None
    stream: bool
    explicit: str | None = None
    body: Any = None                # the parsed request body (a dict), when JSON
    hide_usage: bool = False        # flextier asked for stream usage the caller did not ask for
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """What a successful non-streamed response said."""

    served: str
    usage: Usage
    text: str = ""
    rid: str | None = None          # the provider's response id (info() keys on it)


class StreamObserver:
    """Watches one streamed response (see the module docstring).

    ``usage`` may be partial while the stream runs; ``usage_final`` says it came from the
    event that carries the bill, and only then is the stream priced.
    """

    def __init__(self, call: Call, tier: str) -> None:
        self.call = call
        self.tier = tier
        self.served: str | None = None
        self.usage: Usage | None = None
        self.usage_final = False
        self.done = False           # saw the provider's end-of-message event
        self.first = False          # saw content (a token, a tool call)
        self.error: ProviderError | None = None
        self.rid: str | None = None

    def on_headers(self, headers: Mapping[str, str]) -> None:
        """The response's headers (some providers name the served tier there)."""

    def feed(self, chunk: bytes) -> bytes:
        """Account for ``chunk``; return the bytes to hand on."""
        return chunk

    def flush(self) -> bytes:
        """The stream ended: what is still held back."""
        return b""


#: Most bytes one server-sent event may take before its end (the guard's body cap,
#: :data:`flextier.guard.MAX_RESPONSE_BYTES`): the framer holds an unfinished event, so a
#: stream that never sends its blank line would otherwise grow without bound.
MAX_EVENT_BYTES = 32 * 1024 * 1024

KEEP = None      # SSEObserver.event: hand the event on unchanged
DROP = False     # ... or not at all


class SSEObserver(StreamObserver):
    """Server-sent events: split on blank lines, hand each ``data:`` JSON to :meth:`event`."""

    def __init__(self, call: Call, tier: str) -> None:
        super().__init__(call, tier)
        self._buf = bytearray()     # an unfinished event, grown in place (no copy per chunk)
        self._scan = 0              # where in it a terminator may still start

    def feed(self, chunk: bytes) -> bytes:
        if self._buf:
            self._buf += chunk
            buf: Any = self._buf
            scan = self._scan
        else:                       # the common case: whole events in one chunk, no copy
            buf, scan = chunk, 0
        out: list[bytes] = []
        start = 0
        while True:
            at = max(start, scan)
            i = buf.find(b"\n\n", at)
            j = buf.find(b"\r\n\r\n", at)
            if i < 0 and j < 0:
                break
            if j >= 0 and (i < 0 or j < i):
                end = j + 4
            else:
                end = i + 2
            raw = bytes(buf[start:end])
            start = end
            out.append(self._one(raw))
        left = len(buf) - start
        if left > MAX_EVENT_BYTES:   # one event that never ends: refuse, do not hold it
            self._buf, self._scan = bytearray(), 0
            from ..guard import response_too_large
            raise response_too_large(f"stream event over {MAX_EVENT_BYTES // (1024 * 1024)} MiB")
        if left == 0:
            if self._buf:
                self._buf = bytearray()
        elif start or buf is not self._buf:
            self._buf = bytearray(buf[start:])
        self._scan = max(0, left - 3)   # a terminator may straddle this chunk and the next
        return b"".join(out) if len(out) != 1 else out[0]

    def flush(self) -> bytes:
        rest, self._buf, self._scan = bytes(self._buf), bytearray(), 0
        if rest.strip():
            return self._one(rest)
        return rest

    def _one(self, raw: bytes) -> bytes:
        name = None
        data: list[bytes] = []
        for line in raw.splitlines():
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
        if not data:
            return raw
        text = b"\n".join(data)
        if text.strip() == b"[DONE]":
            self.on_done()
            return raw
        try:
            obj = json.loads(text)
        except ValueError:
            return raw
        r = self.event(name, obj)
        if r is KEEP:
            return raw
        if r is DROP:
            return b""
        head = f"event: {name}\n".encode() if name else b""
        return head + b"data: " + dumps(r) + b"\n\n"

    def on_done(self) -> None:
        """The ``[DONE]`` sentinel (OpenAI Chat)."""
        self.done = True

    def event(self, name: str | None, data: Any) -> Any:
        """Account for one event; return KEEP, DROP or a replacement ``data`` object."""
        return KEEP


class Dialect:
    """One provider's wire, as the transport engine needs it (see the module docstring)."""

    provider = ""

    def recognise(self, method: str, path: str, body: bytes | dict[str, Any]) -> Call | None:
        """A :class:`Call` when this is a generation request; None passes it through untouched.
        ``body`` is the request's bytes, or the JSON object already decoded from them
        (:func:`request_object`)."""
        return None

    def attempt_body(self, call: Call, tier: str, raw: bytes) -> tuple[bytes, dict[str, str | None]]:
        """The request body for one attempt on ``tier`` and the header changes (None: remove)."""
        return raw, {}

    def reply(self, call: Call, headers: Mapping[str, str], content: bytes, tier: str) -> Reply:
        """Served tier and usage of a 2xx non-streamed response; raises a taxonomy error for a
        2xx that is not a usable answer (an error body, no usage)."""
        raise NotImplementedError

    def classify(self, status: int, headers: Mapping[str, str], content: bytes, url: Any,
                 tier: str) -> ProviderError:
        """A non-2xx response -> taxonomy."""
        raise NotImplementedError

    def observer(self, call: Call, tier: str) -> StreamObserver:
        return StreamObserver(call, tier)

    def surface(self, err: ProviderError) -> BaseException:
        """The exception the caller gets when the policy gives up: ``err`` itself, or (for an SDK
        that wraps foreign exceptions from its transport) ``err`` as its class *and* the SDK's
        base error (:func:`as_sdk_error`)."""
        return err


_DUAL: dict[tuple[type, type], type] = {}


def as_sdk_error(err: ProviderError, base: type) -> ProviderError:
    """``err`` re-made as an instance of a class that is both ``type(err)`` and ``base``.

    Why: Anthropic's client turns any exception from its transport that is not an
    ``AnthropicError`` into ``APIConnectionError``; raising the taxonomy class as an
    ``AnthropicError`` (and, for symmetry, ``OpenAIError``) lets it reach the caller as is,
    so ``except flextier.RateLimited`` and ``except anthropic.AnthropicError`` both work.
    """
    if isinstance(err, base):
        return err
    cls = type(err)
    dual = _DUAL.get((cls, base))
    if dual is None:
        dual = _DUAL[(cls, base)] = type(cls.__name__, (cls, base), {"__module__": cls.__module__,
                                                                      "__doc__": cls.__doc__})
    new = dual.__new__(dual)
    new.__dict__.update(err.__dict__)
    new.args = err.args
    new.__cause__ = err.__cause__
    return new


def request_object(body: bytes | dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object a generation request carries, or None when it is not one.

    None means "not ours to touch": the engine passes such a request through unchanged and the
    provider answers it with its own error, so a dialect never guesses at a malformed body.
    A dict is that object already decoded from the same bytes by the caller (the gateway's route
    decodes the body once, docs/gateway.md "Per-call CPU"); it is read, never changed.
    """
    if isinstance(body, dict):
        return body
    try:
        b = json.loads(body)
    except ValueError:
        return None
    return b if isinstance(b, dict) else None


def reply_object(content: bytes) -> dict[str, Any]:
    """A successful response's JSON object; a non-object raises ``JSONDecodeError`` like bad JSON,
    so the engine's one "malformed response" path handles both."""
    body = json.loads(content)
    if not isinstance(body, dict):
        raise json.JSONDecodeError("not an object", str(content[:100]), 0)
    return body


def json_or_text(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return content.decode("utf-8", "replace")[:500]
