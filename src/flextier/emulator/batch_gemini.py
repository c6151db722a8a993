"""Gemini Batch API on the emulator (docs/providers.md, Batch APIs, google-genai 3.6.1 ``batches``).

* ``POST /v1beta/models/{model}:batchGenerateContent`` with
  ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata": {"key"}}]}}}}``
  (inline, at most 20 MB) or ``"inputConfig": {"fileName": "files/..."}`` (a JSONL file of
  ``{"key", "request"}`` lines uploaded through the resumable File API below).
* ``GET /v1beta/batches/{id}``, ``POST /v1beta/batches/{id}:cancel``, ``GET /v1beta/batches``,
  ``DELETE /v1beta/batches/{id}``.

The batch is returned Operation-style, ``{"name": "batches/…", "metadata": {…}, "done"}``,
because that is where the SDK reads ``state`` (``BATCH_STATE_PENDING|RUNNING|SUCCEEDED|
FAILED|CANCELLED|EXPIRED``), ``createTime``/``endTime`` and ``output``. Output mirrors the
input: ``output.inlinedResponses.inlinedResponses`` (``{"response"|"error", "metadata"}``)
for inline batches, ``output.responsesFile`` (JSONL ``{"key", "response"|"error"}``,
downloaded from ``/download/v1beta/files/{id}:download?alt=media``) for file batches. Only
requests that were served appear: an expired or cancelled batch delivers partial output.
"""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .batch_core import BatchEngine, BatchJob, BatchLine, _Req, parse_with, rfc3339
from .gemini_api import GeminiAPI
from .http import BadJSON, json_response, read_json

__all__ = ["GeminiBatchAPI", "MAX_INLINE_BYTES", "is_google"]

MAX_INLINE_BYTES = 20 * 1024 * 1024
WINDOW_S = 24 * 3600.0
_STATE = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
          "finalizing": "BATCH_STATE_RUNNING", "cancelling": "BATCH_STATE_RUNNING",
          "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
          "cancelled": "BATCH_STATE_CANCELLED", "expired": "BATCH_STATE_EXPIRED"}
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL", 503: "UNAVAILABLE"}
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def is_google(request: Request) -> bool:
    """A request from google-genai (which shares ``/v1/batches`` paths with the OpenAI SDK)."""
    h = request.headers
    return "x-goog-api-key" in h or "x-goog-api-client" in h


def _bid(request: Request) -> str:
    p = request.path_params
    return str(p.get("bid") or p.get("batch_id") or "")


def _err(code: int, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message, "status": _CODES.get(code, "UNKNOWN")}}, code)


class GeminiBatchAPI:
    def __init__(self, be: BatchEngine) -> None:
        self.be = be
        self.online = GeminiAPI(be.engine)
        self._uploads: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[BaseRoute]:
        """Under ``/v1beta`` and ``/v1`` (google-genai 3.6 calls ``/v1`` by default).

        ``GET /v1/files/{id}`` is left to the OpenAI Files API, which owns that path; the
        batch flow never needs Gemini file metadata, only ``:download``.
        ``GET /v1/batches`` and ``GET /v1/batches/{id}`` are shared with OpenAI: see
        :func:`.batch_routes.batch_routes`, which dispatches them with :func:`is_google`.
        """
        out: list[BaseRoute] = []
        for v in ("v1beta", "v1"):
            if v == "v1beta":
                out += [Route(f"/{v}/batches/{{bid}}", self.get, methods=["GET"]),
                        Route(f"/{v}/batches", self.list, methods=["GET"])]
            out += [
                Route(f"/{v}/models/{{model}}:batchGenerateContent", self.create, methods=["POST"]),
                Route(f"/{v}/batches/{{bid}}:cancel", self.cancel, methods=["POST"]),
                Route(f"/{v}/batches/{{bid}}", self.delete, methods=["DELETE"]),
                Route(f"/upload/{v}/files", self.upload_start, methods=["POST"]),
                Route(f"/upload/{v}/files/{{upload_id}}", self.upload_data, methods=["POST"]),
                Route(f"/download/{v}/files/{{fid}}:download", self.download, methods=["GET"]),
                Route(f"/{v}/files/{{fid}}:download", self.download, methods=["GET"]),
            ]
        out.append(Route("/v1beta/files/{fid}", self.get_file, methods=["GET"]))
        return out

    # -- files (resumable upload protocol, as google-genai speaks it) ---------------------------------
    def _file_obj(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"name": f["id"], "displayName": f.get("display_name") or f["id"], "mimeType": f["mime"],
                "sizeBytes": str(len(f["data"])), "createTime": rfc3339(f["created_at"]),
                "updateTime": rfc3339(f["created_at"]), "expirationTime": rfc3339(f["created_at"] + 48 * 3600),
                "sha256Hash": "", "uri": f"{f['base']}/v1beta/{f['id']}", "state": "ACTIVE",
                "source": f.get("source", "UPLOADED"),
                **({"downloadUri": f"{f['base']}/download/v1/{f['id']}:download?alt=media"}
                   if f.get("source") == "GENERATED" else {})}

    def add_file(self, data: bytes, base: str, *, mime: str = "application/jsonl", display_name: str = "",
                 source: str = "UPLOADED") -> dict[str, Any]:
        fid = "files/" + self.be.new_id(12, _ALNUM)
        f = {"id": fid, "data": data, "mime": mime, "display_name": display_name, "source": source,
             "created_at": self.be.engine.clock.now(), "base": base, "provider": "gemini"}
        self.be.files[fid] = f
        return f

    async def upload_start(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return _err(400, str(exc))
        meta = body.get("file") or {}
        uid = self.be.new_id(16, _ALNUM)
        self._uploads[uid] = {"meta": meta, "data": bytearray()}
        base = str(request.base_url).rstrip("/")
        version = request.url.path.split("/")[2]
        return Response(b"", 200, headers={"x-goog-upload-url": f"{base}/upload/{version}/files/{uid}",
                                           "x-goog-upload-status": "active"})

    async def upload_data(self, request: Request) -> Response:
        up = self._uploads.get(request.path_params["upload_id"])
        if up is None:
            return _err(404, "Upload not found.")
        up["data"].extend(await request.body())
        cmd = request.headers.get("x-goog-upload-command", "")
        if "finalize" not in cmd:
            return Response(b"", 200, headers={"x-goog-upload-status": "active"})
        del self._uploads[request.path_params["upload_id"]]
        meta = up["meta"]
        f = self.add_file(bytes(up["data"]), str(request.base_url).rstrip("/"),
                          mime=meta.get("mimeType") or "application/jsonl",
                          display_name=meta.get("displayName") or "")
        return json_response({"file": self._file_obj(f)}, 200, {"x-goog-upload-status": "final"})

    async def get_file(self, request: Request) -> Response:
        f = self.be.files.get("files/" + request.path_params["fid"])
        if f is None or f.get("provider") != "gemini":
            return _err(404, "File not found.")
        return json_response(self._file_obj(f))

    async def download(self, request: Request) -> Response:
        f = self.be.files.get("files/" + request.path_params["fid"])
        if f is None or f.get("provider") != "gemini":
            return _err(404, "File not found.")
        return Response(f["data"], 200, media_type=f["mime"])

    # -- batches ------------------------------------------------------------------------------------------
    def _line(self, idx: int, key: str, req: Any, model: str) -> BatchLine:
        if not isinstance(req, dict):
            return BatchLine(idx=idx, key=key, body={}, invalid=(400, {"error": {
                "code": 400, "message": "request must be a GenerateContentRequest object",
                "status": "INVALID_ARGUMENT"}}))
        body = {k: v for k, v in req.items() if k != "model"}
        call, invalid = parse_with(self.online._build, body, _Req(), model, False)
        return BatchLine(idx=idx, key=key, body=req, call=call, invalid=invalid)

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_INLINE_BYTES + 64 * 1024:
            return _err(400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes.")
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return _err(400, str(exc))
        model = request.path_params["model"]
        entry = self.be.engine.catalog.find_wire("gemini", model)
        if entry is None or not entry.supports_batch:
            return _err(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                             "batchGenerateContent.")
        batch = body.get("batch")
        if not isinstance(batch, dict):
            return _err(400, "* BatchGenerateContentRequest.batch: batch is required")
        ic = batch.get("inputConfig") or batch.get("input_config") or {}
        lines: list[BatchLine] = []
        source: str
        if isinstance(ic.get("fileName") or ic.get("file_name"), str):
            fname = ic.get("fileName") or ic.get("file_name")
            f = self.be.files.get(fname)
            if f is None or f.get("provider") != "gemini":
                return _err(400, f"File {fname} not found.")
            source = "file"
            for n, rawline in enumerate(f["data"].splitlines()):
                if not rawline.strip():
                    continue
                try:
                    obj = json.loads(rawline)
                except ValueError:
                    return _err(400, f"Invalid JSON on line {n + 1} of {fname}.")
                key = str(obj.get("key", n)) if isinstance(obj, dict) else str(n)
                lines.append(self._line(len(lines), key, obj.get("request") if isinstance(obj, dict) else None,
                                        model))
        else:
            reqs = ((ic.get("requests") or {}).get("requests")) if isinstance(ic.get("requests"), dict) else None
            if not isinstance(reqs, list) or not reqs:
                return _err(400, "* BatchGenerateContentRequest.batch.input_config: input_config is required")
            source = "inline"
            for i, r in enumerate(reqs):
                md = r.get("metadata") if isinstance(r, dict) else None
                key = str(md.get("key")) if isinstance(md, dict) and md.get("key") is not None else str(i)
                ln = self._line(i, key, r.get("request") if isinstance(r, dict) else None, model)
                ln.body = {"metadata": md} if md is not None else {}
                lines.append(ln)
        bid = "batches/" + self.be.new_id(28, _ALNUM)
        job = self.be.create(job_id=bid, provider="gemini", entry=entry, lines=lines,
                             window_s=self.be.window_for(WINDOW_S),
                             meta={"model": f"models/{entry.model_id}", "display_name": batch.get("displayName")
                                   or batch.get("display_name") or "", "source": source,
                                   "base": str(request.base_url).rstrip("/")},
                             on_end=self._write_file_output if source == "file" else None)
        return json_response(self.render(job))

    def _job(self, bid: str) -> BatchJob | None:
        j = self.be.jobs.get("batches/" + bid)
        return j if j is not None and j.provider == "gemini" else None

    async def get(self, request: Request) -> Response:
        job = self._job(_bid(request))
        if job is None:
            return _err(404, f"Batch batches/{_bid(request)} not found.")
        await self.be.settle(job)
        return json_response(self.render(job))

    async def cancel(self, request: Request) -> Response:
        job = self._job(_bid(request))
        if job is None:
            return _err(404, f"Batch batches/{_bid(request)} not found.")
        await self.be.settle(job)
        if job.terminal:
            return _err(400, f"Batch {job.id} has already ended ({_STATE[job.state]}).")
        self.be.cancel(job)
        return json_response({})

    async def delete(self, request: Request) -> Response:
        job = self._job(_bid(request))
        if job is None:
            return _err(404, f"Batch batches/{_bid(request)} not found.")
        self.be.jobs.pop(job.id, None)
        return json_response({})

    async def list(self, request: Request) -> Response:
        self.be.advance()
        jobs = [j for j in self.be.jobs.values() if j.provider == "gemini"][::-1]
        size = int(request.query_params.get("pageSize", "50") or 50)
        return json_response({"operations": [self.render(j) for j in jobs[:size]]})

    # -- output ---------------------------------------------------------------------------------------------
    def _result(self, job: BatchJob, i: int) -> dict[str, Any] | None:
        ln = job.lines[i]
        if ln.state == "ok":
            resp = dict(ln.response or {})
            um = dict(resp.get("usageMetadata") or {})
            um.pop("serviceTier", None)        # a batch answer does not report an online tier
            resp["usageMetadata"] = um
            return {"response": resp}
        if ln.state == "error":
            assert ln.error is not None
            status, body = ln.error
            err = (body or {}).get("error") or {"code": 500, "message": "An internal error has occurred.",
                                                "status": "INTERNAL"}
            return {"error": {"code": err.get("code", status), "message": err.get("message", ""),
                              "status": err.get("status", _CODES.get(status, "UNKNOWN"))}}
        return None            # expired / cancelled / pending: not in the output

    async def _write_file_output(self, job: BatchJob) -> None:
        out = []
        for i in range(len(job.lines)):
            r = self._result(job, i)
            if r is not None:
                out.append(json.dumps({"key": job.lines[i].key, **r}))
        data = ("\n".join(out) + "\n").encode() if out else b""
        f = self.add_file(data, job.meta["base"], display_name=f"{job.id} responses", source="GENERATED")
        job.meta["responses_file"] = f["id"]

    def render(self, job: BatchJob) -> dict[str, Any]:
        c = job.counts()
        end_t = next((job.times[k] for k in ("completed_at", "expired_at", "cancelled_at", "failed_at")
                      if k in job.times), None)
        md: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "model": job.meta["model"], "displayName": job.meta["display_name"],
            "createTime": rfc3339(job.created_at), "updateTime": rfc3339(job.t),
            "batchStats": {"requestCount": str(c["total"]), "successfulRequestCount": str(c["ok"]),
                           "failedRequestCount": str(c["error"]), "pendingRequestCount": str(c["pending"])},
            "state": _STATE[job.state], "name": job.id,
        }
        if end_t is not None:
            md["endTime"] = rfc3339(end_t)
        out: dict[str, Any] = {"name": job.id, "metadata": md, "done": job.terminal}
        if job.terminal and job.state != "failed":
            if job.meta["source"] == "file":
                output: dict[str, Any] = {"responsesFile": job.meta.get("responses_file")}
            else:
                inl = []
                for i in range(len(job.lines)):
                    r = self._result(job, i)
                    if r is not None:
                        md_i = job.lines[i].body.get("metadata")
                        inl.append({**r, **({"metadata": md_i} if md_i is not None else {})})
                output = {"inlinedResponses": {"inlinedResponses": inl}}
            md["output"] = output
            out["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                                        "GenerateContentBatchOutput", **output}
        return out
