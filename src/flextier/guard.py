"""Limits on what one provider response may cost us: time for the whole attempt, and memory.

Why: an HTTP client's timeouts are per *read*. A hostile or broken endpoint that trickles
one byte a second never trips a 10 s read timeout, so the attempt never ends; and a client
that decompresses whatever arrives lets a 1 MiB gzip body (a "gzip bomb") inflate to
gigabytes in memory. The SDKs (openai, anthropic, google-genai) all sit on httpx, so one
wrapper around the httpx transport puts both limits under every request they send:

* **a total deadline**: the request's own timeout (the per-attempt timeout flextier passes
  the SDK) bounds the whole exchange, not each read. It is checked when the headers arrive
  and between body chunks; past it the stream raises the library's ``ReadTimeout``, which
  every SDK already maps to its timeout error (-> :class:`~flextier.errors.Timeout`).
  The async path is also bounded from outside (:meth:`BaseAdapter.asend`), which catches a
  server that trickles its *headers*.
* **a body cap after decompression**: the transport asks only for ``gzip, deflate`` and
  decodes them itself, incrementally and with zlib's ``max_length``, so no more than
  :data:`MAX_RESPONSE_BYTES` (plus one 64 KiB step) is ever held; beyond it the stream
  raises a possibly billed :class:`~flextier.errors.Transient` (``response_too_large``),
  and so does a body that would take the bytes held by all bodies being read at once past
  :data:`MAX_INFLIGHT_BYTES` (256 concurrent bombs must not add up to gigabytes),
  retried and then failed like any malformed answer. An encoding it did not ask for is
  refused the same way rather than decoded blind.

The wrapper changes nothing else: the inner transport (pool limits, TLS, HTTP/1.1) is the
one the SDK would have used, and a well-behaved response passes through byte for byte.
"""
from __future__ import annotations

import threading
import time
import zlib
from typing import Any, AsyncIterator, Iterator

from .errors import Transient

__all__ = ["MAX_RESPONSE_BYTES", "ACCEPT_ENCODING", "guard_transport", "guard_async_transport",
           "response_too_large", "begin", "take_over"]

#: Most bytes one response body may take once decoded (32 MiB). The largest real answers
#: (128k output tokens as JSON) are a few MiB; logprobs on every token stay well under this.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Most decoded bytes all responses being read at once may hold together (256 MiB). Per-response
#: caps alone still let 256 concurrent bombs take 8 GiB; real answers are small, so only an
#: attack ever reaches this.
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
#: What the guarded transport accepts: only encodings it can decode with a cap.
ACCEPT_ENCODING = "gzip, deflate"
_STEP = 64 * 1024  # most decoded bytes produced per zlib call


def response_too_large(what: str, code: str = "response_too_large") -> Transient:
    """The body passed the cap (or cannot be decoded safely): the provider may have done, and
    billed, the work, so the error is retryable and possibly billed, like a malformed answer."""
    return Transient(f"response body {what}; refused", code=code, possibly_billed=True)


def _deadline(request: Any) -> float | None:
    """Monotonic instant by which the whole exchange must be over (None: no timeout set)."""
    tmo = (request.extensions or {}).get("timeout") or {}
    if tmo.get("read") is None:  # no read timeout asked for: the caller wants to wait
        return None
    return time.monotonic() + max(v for v in tmo.values() if v is not None)


class _InFlight:
    """Decoded bytes held by bodies still being read, process-wide (threads share it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held = max(0, self.held - n)


INFLIGHT = _InFlight(MAX_INFLIGHT_BYTES)


class _Decoder:
    """Incremental, capped decoding of one body (identity, gzip or deflate) into its own buffer.

    The decoded body is kept here and handed on whole at the end, not piece by piece: pieces
    already handed to httpx would live on in the exception's traceback cycle (frames of the
    SDK's ``except ... as err``) until the garbage collector runs, so 16 concurrent bombs held
    16 x 32 MiB. On overflow the buffer is dropped here, at once, before raising.
    """

    def __init__(self, encoding: str, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._held = 0  # this body's share of INFLIGHT
        self._buf = bytearray()
        self.encoding = encoding
        self._inc = _StreamDecoder(encoding)  # the one zlib step; this class adds the caps and the buffer

    def _add(self, out: bytes) -> None:
        n = len(out)
        self.total += n
        if self.total > self.cap:
            self.done()
            what = f"over {self.cap // (1024 * 1024)} MiB" + (f" after {self.encoding} decoding"
                                                              if self._inc.decoding else "")
            raise response_too_large(what)
        if not INFLIGHT.take(n):
            self.done()
            raise response_too_large(f"would pass {INFLIGHT.limit // (1024 * 1024)} MiB held by the answers "
                                     f"being read at once")
        self._held += n
        self._buf += out

    def done(self) -> None:
        """The body is read (or abandoned): drop the buffer; its bytes no longer count as in flight."""
        self._buf = bytearray()
        if self._held:
            INFLIGHT.give(self._held)
            self._held = 0

    def feed(self, chunk: bytes) -> None:
        try:
            for out in self._inc.feed(chunk):
                self._add(out)
        except Transient:
            self.done()
            raise

    def finish(self) -> bytes:
        """The whole decoded body (then the buffer is released)."""
        self._add(self._inc.finish())
        body = bytes(self._buf)
        self.done()
        return body


def _check_time(deadline: float | None, timeout_exc: type[BaseException], request: Any) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise timeout_exc("the attempt ran past its total deadline", request=request)


def _prepare(request: Any) -> float | None:
    request.headers["accept-encoding"] = ACCEPT_ENCODING
    return _deadline(request)


def _decoder_for(response: Any, cap: int) -> _Decoder:
    """Take the decoding over from the client (so it cannot inflate the body unbounded)."""
    values = [v.strip().lower() for v in response.headers.get_list("content-encoding", split_commas=True)]
    values = [v for v in values if v and v != "identity"]
    if len(values) > 1 or (values and values[0] not in ("gzip", "x-gzip", "deflate")):
        raise response_too_large(f"has content-encoding {', '.join(values)[:40]!r}, which was not asked for",
                                 "unexpected_encoding")
    if values:
        del response.headers["content-encoding"]
        if "content-length" in response.headers:
            del response.headers["content-length"]
    return _Decoder(values[0] if values else "identity", cap)


class _StreamDecoder:
    """Incremental decoding of a *streamed* body, handed on piece by piece as it arrives.

    A stream is not held whole (its size has no useful cap: a long answer streams tens of MiB),
    so each zlib call yields at most :data:`_STEP` bytes and passes them on; what a stream may
    hold is capped where it is held (the transport engine's read-ahead before the first token and
    the SSE framer's unfinished event: ``flextier.intercept``, ``providers/wire.py``), and how long
    it may take by the total deadline.
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        self._first = True

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._z is None:
            if chunk:
                yield chunk
            return
        data = chunk
        while data:
            try:
                out = self._z.decompress(data, _STEP)
            except zlib.error:
                if self.encoding == "deflate" and self._first:
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise response_too_large(f"is not valid {self.encoding} data", "bad_encoding") from None
            self._first = False
            if out:
                yield out
            data = self._z.unconsumed_tail

    @property
    def decoding(self) -> bool:
        return self._z is not None

    def finish(self) -> bytes:
        return self._z.flush() if self._z is not None else b""


def _classes(hx: Any) -> tuple[type, type, type, type]:
    """The guarded byte streams for one httpx module (``httpx`` or ``httpx2``), made once."""
    got = _CLASSES.get(hx)
    if got is not None:
        return got

    class _Stream(hx.SyncByteStream):
        """A whole body, capped: handed on at the end (see :class:`_Decoder`)."""

        def __init__(self, raw: Any, dec: _Decoder, deadline: float | None, request: Any) -> None:
            self._raw, self._dec, self._deadline, self._request = raw, dec, deadline, request

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._raw:
                    _check_time(self._deadline, hx.ReadTimeout, self._request)
                    self._dec.feed(chunk)
                body = self._dec.finish()
            finally:
                self._dec.done()
            if body:
                yield body

        def close(self) -> None:
            self._dec.done()
            self._raw.close()

    class _AStream(hx.AsyncByteStream):
        def __init__(self, raw: Any, dec: _Decoder, deadline: float | None, request: Any) -> None:
            self._raw, self._dec, self._deadline, self._request = raw, dec, deadline, request

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._raw:
                    _check_time(self._deadline, hx.ReadTimeout, self._request)
                    self._dec.feed(chunk)
                body = self._dec.finish()
            finally:
                self._dec.done()
            if body:
                yield body

        async def aclose(self) -> None:
            self._dec.done()
            await self._raw.aclose()

    class _Live(hx.SyncByteStream):
        """A streamed body: decoded as it arrives, every chunk checked against the total deadline."""

        def __init__(self, raw: Any, dec: _StreamDecoder, deadline: float | None, request: Any) -> None:
            self._raw, self._dec, self._deadline, self._request = raw, dec, deadline, request

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._raw:
                _check_time(self._deadline, hx.ReadTimeout, self._request)
                yield from self._dec.feed(chunk)
            tail = self._dec.finish()
            if tail:
                yield tail

        def close(self) -> None:
            self._raw.close()

    class _ALive(hx.AsyncByteStream):
        def __init__(self, raw: Any, dec: _StreamDecoder, deadline: float | None, request: Any) -> None:
            self._raw, self._dec, self._deadline, self._request = raw, dec, deadline, request

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._raw:
                _check_time(self._deadline, hx.ReadTimeout, self._request)
                for piece in self._dec.feed(chunk):
                    yield piece
            tail = self._dec.finish()
            if tail:
                yield tail

        async def aclose(self) -> None:
            await self._raw.aclose()

    _CLASSES[hx] = (_Stream, _AStream, _Live, _ALive)
    return _CLASSES[hx]


_CLASSES: dict[Any, tuple[type, type, type, type]] = {}


def begin(request: Any) -> float | None:
    """Ready ``request`` for a guarded exchange (only encodings the guard can cap are asked for);
    returns the monotonic instant by which the whole exchange must be over (None: no timeout)."""
    return _prepare(request)


def take_over(response: Any, hx: Any, deadline: float | None, request: Any, *, streamed: bool = False,
              sync: bool = True, max_bytes: int = MAX_RESPONSE_BYTES) -> Any:
    """Put ``response`` (just returned by a transport) under the guard, in place, and return it.

    Raises (the caller closes the response) when the deadline already passed while the headers
    came in, or the body is in an encoding that was not asked for. ``streamed``: the body is a
    stream the caller reads as it arrives (SSE): decoded piece by piece, deadline-checked, not
    held whole; otherwise it is decoded into one capped buffer (:class:`_Decoder`).
    This is what :func:`guard_transport` does to every response, and what the transport engine
    (:mod:`flextier.intercept`) does to each generation attempt, so ``wrap()``, ``http_client()``
    and the gateway get the same limits as ``complete()`` and the job path (docs/providers.md).
    """
    _check_time(deadline, hx.ReadTimeout, request)
    stream_cls, astream_cls, live_cls, alive_cls = _classes(hx)
    dec = _decoder_for(response, max_bytes)
    if streamed:
        response.stream = (live_cls if sync else alive_cls)(response.stream, _StreamDecoder(dec.encoding),
                                                             deadline, request)
    else:
        response.stream = (stream_cls if sync else astream_cls)(response.stream, dec, deadline, request)
    return response


def guard_transport(inner: Any, hx: Any, *, max_bytes: int = MAX_RESPONSE_BYTES) -> Any:
    """``inner`` (an httpx/httpx2 ``BaseTransport``) with the total deadline and the body cap.

    ``hx`` is the httpx module the SDK uses (``httpx`` or ``httpx2``): its ``ReadTimeout`` is
    what the SDK recognises as a timeout.
    """

    class GuardedTransport(hx.BaseTransport):
        def __init__(self) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            deadline = begin(request)
            response = inner.handle_request(request)
            try:
                return take_over(response, hx, deadline, request, max_bytes=max_bytes)
            except BaseException:
                response.close()
                raise

        def close(self) -> None:
            inner.close()

    return GuardedTransport()


def guard_async_transport(inner: Any, hx: Any, *, max_bytes: int = MAX_RESPONSE_BYTES) -> Any:
    """Async twin of :func:`guard_transport` (``inner`` is an ``AsyncBaseTransport``)."""

    class AsyncGuardedTransport(hx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            deadline = begin(request)
            response = await inner.handle_async_request(request)
            try:
                return take_over(response, hx, deadline, request, sync=False, max_bytes=max_bytes)
            except BaseException:
                await response.aclose()
                raise

        async def aclose(self) -> None:
            await inner.aclose()

    return AsyncGuardedTransport()
