"""The request flow every provider endpoint shares, with provider hooks.

A wire module subclasses :class:`WireAPI`, lists its Starlette routes, and turns
its request body into a :class:`Call` (a provider-neutral request plus how to
render the answer). :meth:`WireAPI.run` then does the rest identically for every
provider: admission, service, faults, streaming, disconnects and the ledger row.
Another module (the batch lane) can add routes the same way, see :mod:`.app`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..catalog import ModelEntry
from .engine import EmuError, Engine, GenRequest, Session
from .tokenizer import prompt_overhead
from .http import BadJSON, DisconnectWatch, EmuStream, ResetResponse, client_item, dumps, json_response, read_json

__all__ = ["WireAPI", "WireError", "Call", "REFUSED_KEY_PREFIX", "presented_key"]

#: The emulator accepts any key, except one that starts with this: it answers with the
#: provider's own "bad credentials" error, so a pipeline can rehearse a revoked key.
REFUSED_KEY_PREFIX = "invalid"


def presented_key(request: Request) -> str | None:
    """The API key a request carries, in any of the four dialects (for AWS SigV4, the access key id)."""
    h = request.headers
    auth = h.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if auth.startswith("AWS4-HMAC-SHA256"):
        at = auth.find("Credential=")
        return auth[at + 11:].split("/", 1)[0] if at >= 0 else None
    return h.get("x-api-key") or h.get("x-goog-api-key") or request.query_params.get("key")


class WireError(Exception):
    """A request the provider rejects outright (validation): the response is ready."""

    def __init__(self, response: Response, *, model_wire: str = "", entry: ModelEntry | None = None,
                 tier: str | None = None, outcome: str = "error") -> None:
        super().__init__(f"wire error {response.status_code}")
        self.response = response
        self.model_wire = model_wire
        self.entry = entry
        self.tier = tier
        self.outcome = outcome


@dataclass
class Call:
    """A parsed request: what to generate and how to answer in this provider's format."""

    req: GenRequest
    render: Callable[[Session], dict[str, Any]]
    stream: Callable[[Session], AsyncIterator[bytes]] | None = None
    stream_media: str = "text/event-stream"
    headers: Callable[[Session], dict[str, str]] = field(default=lambda s: {})
    id_prefix: str = ""           # the provider-visible response id is id_prefix + session id
    #: called with the rendered body once the answer is billed (OpenAI ``store: true``: the
    #: stored completion exists exactly when the work was paid for, see openai_api.ChatStore)
    keep: Callable[[Session, dict[str, Any]], None] | None = None
    #: OpenAI Responses ``background: true``: answer at once with this object, given the request's
    #: id (``status: "queued"``), and admit, serve, bill and keep it in a task; the answer is then
    #: read with ``GET /v1/responses/{id}`` (see openai_api)
    background: Callable[[str], dict[str, Any]] | None = None
    #: a background response that failed (refused at admission, or preempted), with the id and
    #: the provider's error object: kept as ``failed``
    failed: Callable[[str, dict[str, Any]], None] | None = None


class WireAPI:
    """Base class of the four provider dialects."""

    provider: str = ""
    reset_media = "application/json"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._background: set[asyncio.Task] = set()   # background responses still being served

    def routes(self) -> list[BaseRoute]:  # pragma: no cover - abstract
        raise NotImplementedError

    # hooks -------------------------------------------------------------------------------
    def error_response(self, err: EmuError, req: GenRequest) -> Response:  # pragma: no cover
        raise NotImplementedError

    def bad_request(self, message: str) -> Response:  # pragma: no cover
        raise NotImplementedError

    def auth_error(self) -> Response:  # pragma: no cover
        """The provider's answer to a refused key (see :data:`REFUSED_KEY_PREFIX`)."""
        raise NotImplementedError

    def overhead(self, body: dict[str, Any]) -> int:
        """Prompt tokens beyond the message text (framing, tools): see :func:`.tokenizer.prompt_overhead`."""
        return prompt_overhead(self.provider, body)

    # shared flow -------------------------------------------------------------------------------
    async def run(self, request: Request, build: Callable[[dict[str, Any], Request], Call]) -> Any:
        try:
            return await self._run(request, build)
        except asyncio.CancelledError:
            # the server is shutting down with this request in flight; nobody is listening
            return Response(b"", 503)

    async def _run(self, request: Request, build: Callable[[dict[str, Any], Request], Call]) -> Any:
        engine = self.engine
        item = client_item(request)
        key = presented_key(request)
        if key is not None and key.startswith(REFUSED_KEY_PREFIX):
            resp = self.auth_error()
            engine.ledger.add(ts=engine.clock.now(), provider=self.provider, model=None, model_wire="",
                              requested_tier=None, served_tier=None, outcome="error",
                              status=resp.status_code, usage=None, request_id="", item=item, billed=False)
            return resp
        try:
            body = await read_json(request)
            call = build(body, request)
            call.req.prompt_overhead += self.overhead(body)   # framing + tool tokens
        except BadJSON as exc:
            resp = self.bad_request(str(exc))
            engine.ledger.add(ts=engine.clock.now(), provider=self.provider, model=None, model_wire="",
                              requested_tier=None, served_tier=None, outcome="error",
                              status=resp.status_code, usage=None, request_id="", item=item, billed=False)
            return resp
        except WireError as exc:
            engine.ledger.add(ts=engine.clock.now(), provider=self.provider, model=exc.entry,
                              model_wire=exc.model_wire, requested_tier=exc.tier, served_tier=None,
                              outcome=exc.outcome, status=exc.response.status_code, usage=None,
                              request_id="", item=item, billed=False)
            return exc.response
        req = call.req
        req.item = item
        if call.background is not None and not req.stream:
            ids = engine.next_id()
            pending = call.background(ids[1])
            task = asyncio.get_running_loop().create_task(self._run_background(call, ids))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return json_response(pending, 200)
        watch = DisconnectWatch(request)
        try:
            sess = await engine.begin(req, watch)
        except EmuError as err:
            watch.close()
            resp = self.error_response(err, req)
            engine.record_error(req, err, resp.status_code, provider=self.provider, model_wire=req.model_wire,
                                entry=req.entry, tier=req.tier, request_id="", item=item)
            return resp
        sess.request_id = call.id_prefix + sess.rid
        if req.stream and call.stream is not None:
            watch.close()
            return EmuStream(self._stream(call, sess), media_type=call.stream_media, headers=call.headers(sess),
                             on_gone=lambda: sess.complete("ok_client_gone", 200))
        try:
            if sess.plan is not None and sess.plan.service_s > 0:
                _ = watch.event          # start watching: a client that leaves is still billed
            await sess.serve(watch)
        except EmuError as err:
            resp = self.error_response(err, req)
            sess.fail(err, resp.status_code)
            return resp
        finally:
            watch.close()
        body = call.render(sess)
        headers = call.headers(sess)
        if sess.fault_reset:
            sess.complete("fault:reset", 200, billed=engine.knobs.bill_interrupted)
            if call.keep is not None and engine.knobs.bill_interrupted:
                call.keep(sess, body)
            return ResetResponse(200, headers, dumps(body), self.reset_media)
        sess.complete("ok_client_gone" if watch.gone else "ok", 200)
        if call.keep is not None:
            call.keep(sess, body)
        return json_response(body, 200, headers)

    def _error_object(self, err: EmuError, req: GenRequest) -> tuple[int, dict[str, Any]]:
        """(status, the provider's error object) this dialect would answer ``err`` with."""
        import json

        resp = self.error_response(err, req)
        try:
            obj = json.loads(bytes(resp.body)).get("error") or {}
        except (ValueError, AttributeError):
            obj = {}
        return resp.status_code, obj if isinstance(obj, dict) else {"message": str(obj)}

    async def _run_background(self, call: Call, ids: tuple[int, str]) -> None:
        """Admit, serve and bill a background request whoever is listening; keep it as it ends."""
        engine, req = self.engine, call.req
        try:
            sess = await engine.begin(req, None, ids=ids)
        except EmuError as err:
            status, obj = self._error_object(err, req)
            engine.record_error(req, err, status, provider=self.provider, model_wire=req.model_wire,
                                entry=req.entry, tier=req.tier, request_id=call.id_prefix + ids[1], item=req.item)
            if call.failed is not None:
                call.failed(ids[1], obj)
            return
        except asyncio.CancelledError:  # the server is shutting down
            raise
        sess.request_id = call.id_prefix + sess.rid
        try:
            await sess.serve(None)
        except EmuError as err:
            _, obj = self._error_object(err, req)
            sess.fail(err, 200)
            if call.failed is not None:
                call.failed(ids[1], obj)
            return
        except asyncio.CancelledError:  # the server is shutting down: nothing was delivered
            sess.complete("background_cancelled", 200, billed=False)
            raise
        body = call.render(sess)      # the Responses render keeps (stores) the finished object
        sess.complete("ok", 200)
        if call.keep is not None:
            call.keep(sess, body)

    async def _stream(self, call: Call, sess: Session) -> AsyncIterator[bytes]:
        """Wrap a provider's stream body with fault injection and mid-stream errors."""
        assert call.stream is not None
        from .http import AbortStream
        cut_at = None
        if sess.fault_truncate or sess.fault_reset:
            cut_at = 2 + int(sess.u[9] * 4)      # after a few frames
        n = 0
        held: bytes | None = None      # one-chunk lookahead: bill before the final chunk leaves
        try:
            async for chunk in call.stream(sess):
                if cut_at is not None and n >= cut_at:
                    outcome = "fault:reset" if sess.fault_reset else "fault:truncated"
                    sess.complete(outcome, 200, billed=self.engine.knobs.bill_interrupted)
                    raise AbortStream(reset=sess.fault_reset)
                n += 1
                if held is not None:
                    yield held
                held = chunk
        except EmuError as err:
            sess.fail(err, 200)
            if held is not None:
                yield held
            yield self.stream_error(err)
            return
        sess.complete("ok", 200)
        if held is not None:
            yield held

    def stream_error(self, err: EmuError) -> bytes:
        return b""
