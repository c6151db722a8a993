"""Anthropic Message Batches on the emulator: ``/v1/messages/batches`` (docs/providers.md).

Shapes follow anthropic 2.14's ``MessageBatch``: ``processing_status`` is
``in_progress``, ``canceling`` or ``ended``; ``request_counts`` keep every request in
``processing`` until the whole batch ends (as the real API documents), then split it
into ``succeeded``/``errored``/``canceled``/``expired``. ``results_url`` appears only when
the batch has ended and points back at this emulator; the results are JSONL lines
``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"}
| {"type": "canceled"} | {"type": "expired"}}``, in no particular order. A request whose
``params`` the Messages API would reject is not a batch error: it ends ``errored`` with
that ``invalid_request_error``. Successful messages report ``usage.service_tier: "batch"``.
"""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .anthropic_api import AnthropicAPI
from .batch_core import BatchEngine, BatchJob, BatchLine, _Req, parse_with, rfc3339
from .http import BadJSON, json_response, read_json

__all__ = ["AnthropicBatchAPI", "MAX_REQUESTS", "MAX_BYTES"]

MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
WINDOW_S = 24 * 3600.0
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _err(status: int, type_: str, message: str) -> Response:
    return json_response({"type": "error", "error": {"type": type_, "message": message},
                          "request_id": "req_emulator_batch"}, status)


class AnthropicBatchAPI:
    def __init__(self, be: BatchEngine) -> None:
        self.be = be
        self.online = AnthropicAPI(be.engine)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages/batches", self.create, methods=["POST"]),
            Route("/v1/messages/batches", self.list, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self.retrieve, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/messages/batches/{batch_id}/results", self.results, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BYTES:
            return _err(413, "request_too_large", f"Request exceeds the maximum size of {MAX_BYTES} bytes.")
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return _err(400, "invalid_request_error", str(exc))
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            return _err(400, "invalid_request_error", "requests: Field required" if reqs is None else
                        "requests: List should have at least 1 item")
        if len(reqs) > MAX_REQUESTS:
            return _err(400, "invalid_request_error",
                        f"requests: List should have at most {MAX_REQUESTS} items after validation")
        seen: set[str] = set()
        lines: list[BatchLine] = []
        for i, r in enumerate(reqs):
            if not isinstance(r, dict) or not isinstance(r.get("params"), dict):
                return _err(400, "invalid_request_error", f"requests.{i}.params: Field required")
            cid = r.get("custom_id")
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return _err(400, "invalid_request_error", f"requests.{i}.custom_id: String should match pattern "
                            "'^[a-zA-Z0-9_-]{1,64}$'")
            if cid in seen:
                return _err(400, "invalid_request_error", f"Duplicate custom_id: {cid!r}. Each request in a "
                            "batch must have a unique custom_id.")
            seen.add(cid)
            params = r["params"]
            if params.get("stream"):
                call, invalid = None, (400, {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "stream: Streaming is not supported in batches."}})
            else:
                call, invalid = parse_with(self.online._build, params, _Req())
            lines.append(BatchLine(idx=i, key=cid, body=params, call=call, invalid=invalid))
        first = next((ln.call.req.entry for ln in lines if ln.call is not None), None)
        bid = "msgbatch_" + self.be.new_id(24, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")
        job = self.be.create(job_id=bid, provider="anthropic", entry=first, lines=lines,
                             window_s=self.be.window_for(WINDOW_S))
        return json_response(self.render(job, request))

    def _job(self, bid: str) -> BatchJob | None:
        j = self.be.jobs.get(bid)
        return j if j is not None and j.provider == "anthropic" else None

    def _missing(self, bid: str) -> Response:
        return _err(404, "not_found_error", f"Message batch {bid!r} not found.")

    async def retrieve(self, request: Request) -> Response:
        job = self._job(request.path_params["batch_id"])
        if job is None:
            return self._missing(request.path_params["batch_id"])
        await self.be.settle(job)
        return json_response(self.render(job, request))

    async def list(self, request: Request) -> Response:
        self.be.advance()
        jobs = [j for j in self.be.jobs.values() if j.provider == "anthropic"][::-1]
        limit = int(request.query_params.get("limit", "20") or 20)
        page = jobs[:max(1, min(limit, 1000))]
        data = [self.render(j, request) for j in page]
        return json_response({"data": data, "has_more": len(jobs) > len(page),
                              "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    async def cancel(self, request: Request) -> Response:
        job = self._job(request.path_params["batch_id"])
        if job is None:
            return self._missing(request.path_params["batch_id"])
        await self.be.settle(job)
        if not job.terminal:
            self.be.cancel(job)
        return json_response(self.render(job, request))

    async def results(self, request: Request) -> Response:
        job = self._job(request.path_params["batch_id"])
        if job is None:
            return self._missing(request.path_params["batch_id"])
        await self.be.settle(job)
        if not job.terminal:
            return _err(400, "invalid_request_error", f"Message batch {job.id} is still in progress; results are "
                        "available once processing has ended.")
        out = []
        for i in job.order:
            ln = job.lines[i]
            if ln.state == "ok":
                msg = dict(ln.response or {})
                msg["usage"] = {**(msg.get("usage") or {}), "service_tier": "batch"}
                result: dict[str, Any] = {"type": "succeeded", "message": msg}
            elif ln.state == "error":
                assert ln.error is not None
                status, body = ln.error
                err = body if body else {"type": "error", "error": {"type": "api_error",
                                                                     "message": "Internal server error"}}
                result = {"type": "errored", "error": {**err, "request_id": err.get("request_id") or f"req_{ln.rid}"}}
            elif ln.state == "cancelled":
                result = {"type": "canceled"}
            else:
                result = {"type": "expired"}
            out.append(json.dumps({"custom_id": ln.key, "result": result}))
        return Response(("\n".join(out) + "\n").encode(), 200, media_type="application/binary")

    def render(self, job: BatchJob, request: Request) -> dict[str, Any]:
        c = job.counts()
        ended = job.terminal
        status = "ended" if ended else ("canceling" if job.state == "cancelling" else "in_progress")
        end_t = next((job.times[k] for k in ("completed_at", "expired_at", "cancelled_at", "failed_at")
                      if k in job.times), None)
        base = str(request.base_url).rstrip("/")
        return {
            "id": job.id, "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": 0 if ended else c["total"],
                               "succeeded": c["ok"] if ended else 0, "errored": c["error"] if ended else 0,
                               "canceled": c["cancelled"] if ended else 0, "expired": c["expired"] if ended else 0},
            "ended_at": rfc3339(end_t) if ended else None, "created_at": rfc3339(job.created_at),
            "expires_at": rfc3339(job.created_at + job.window_s), "archived_at": None,
            "cancel_initiated_at": rfc3339(job.times.get("cancelling_at")),
            "results_url": f"{base}/v1/messages/batches/{job.id}/results" if ended else None,
        }
