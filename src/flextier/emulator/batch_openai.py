"""OpenAI Batch API on the emulator: ``/v1/files`` and ``/v1/batches`` (docs/providers.md, Batch APIs).

Shapes follow openai 3.57's ``Batch``, ``FileObject`` and ``BatchRequestCounts``: the
input is an uploaded JSONL file of ``{"custom_id", "method", "url", "body"}`` lines; the
batch walks ``validating -> in_progress -> finalizing -> completed`` (or ``failed``,
``expired``, ``cancelling -> cancelled``); successes go to ``output_file_id`` as
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}``
and everything else to ``error_file_id`` — failed requests with their error response,
expired or cancelled ones with ``response: null`` and ``error.code`` ``batch_expired`` /
``batch_cancelled``. Each line is parsed and answered by the online dialect
(:class:`~.openai_api.OpenAIAPI`), so a batch answer looks exactly like an online one.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .batch_core import BatchEngine, BatchJob, BatchLine, _Req, parse_with
from .http import BadJSON, json_response, read_json
from .openai_api import OpenAIAPI

__all__ = ["OpenAIBatchAPI", "MAX_LINES", "MAX_BYTES"]

MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
WINDOW_S = 24 * 3600.0
_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/responses": "responses"}
_ALL_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
                  "/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos")


def _err(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
         param: str | None = None) -> Response:
    return json_response({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """Form fields of a multipart/form-data body: name -> (bytes, filename).

    The emulator has no python-multipart dependency; the stdlib MIME parser is enough.
    """
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    out: dict[str, tuple[bytes, str | None]] = {}
    if not msg.is_multipart():
        return out
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        out[str(name)] = (payload, part.get_filename())
    return out


class OpenAIBatchAPI:
    """The routes, bound to the shared :class:`BatchEngine`."""

    def __init__(self, be: BatchEngine) -> None:
        self.be = be
        self.online = OpenAIAPI(be.engine)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/files", self.upload, methods=["POST"]),
            Route("/v1/files/{file_id}", self.get_file, methods=["GET"]),
            Route("/v1/files/{file_id}", self.delete_file, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self.file_content, methods=["GET"]),
            Route("/v1/batches", self.create, methods=["POST"]),
            Route("/v1/batches", self.list, methods=["GET"]),
            Route("/v1/batches/{batch_id}", self.retrieve, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
        ]

    # -- files --------------------------------------------------------------------------------------
    def _file_obj(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"id": f["id"], "object": "file", "bytes": len(f["data"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed",
                "expires_at": f.get("expires_at"), "status_details": None}

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = "file-" + self.be.new_id(22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        now = int(self.be.engine.clock.now())
        f = {"id": fid, "data": data, "filename": filename, "purpose": purpose, "created_at": now,
             "expires_at": now + 30 * 86400, "provider": "openai"}
        self.be.files[fid] = f
        return f

    async def upload(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return _err(400, "Expected multipart/form-data with 'file' and 'purpose'.")
        form = parse_multipart(ctype, await request.body())
        if "file" not in form:
            return _err(400, "Missing required parameter: 'file'.", code="missing_required_parameter", param="file")
        purpose = form.get("purpose", (b"", None))[0].decode("utf-8", "replace")
        if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data", "evals"):
            return _err(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        data, filename = form["file"]
        f = self.add_file(data, filename or "upload.jsonl", purpose)
        return json_response(self._file_obj(f))

    def _find_file(self, fid: str) -> dict[str, Any] | None:
        f = self.be.files.get(fid)
        return f if f is not None and f.get("provider") == "openai" else None

    async def get_file(self, request: Request) -> Response:
        f = self._find_file(request.path_params["file_id"])
        if f is None:
            return _err(404, f"No such File object: {request.path_params['file_id']}", param="id")
        return json_response(self._file_obj(f))

    async def delete_file(self, request: Request) -> Response:
        fid = request.path_params["file_id"]
        if self._find_file(fid) is None:
            return _err(404, f"No such File object: {fid}", param="id")
        del self.be.files[fid]
        return json_response({"id": fid, "object": "file", "deleted": True})

    async def file_content(self, request: Request) -> Response:
        f = self._find_file(request.path_params["file_id"])
        if f is None:
            return _err(404, f"No such File object: {request.path_params['file_id']}", param="id")
        return Response(f["data"], 200, media_type="application/octet-stream")

    # -- batches --------------------------------------------------------------------------------------
    def _parse_lines(self, data: bytes, endpoint: str) -> tuple[list[BatchLine], list[dict[str, Any]], str | None]:
        """Lines of the input file, validation errors (which fail the batch), and the model."""
        lines: list[BatchLine] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        model: str | None = None
        kind = _ENDPOINTS[endpoint]
        for n, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                errors.append({"code": "invalid_json_line", "line": n, "param": None,
                               "message": "This line is not parseable as valid JSON."})
                continue
            if not isinstance(obj, dict):
                errors.append({"code": "invalid_json_line", "line": n, "param": None,
                               "message": "Each line must be a JSON object."})
                continue
            cid, body = obj.get("custom_id"), obj.get("body")
            if not isinstance(cid, str) or not cid:
                errors.append({"code": "missing_required_parameter", "line": n, "param": "custom_id",
                               "message": "Missing required parameter: 'custom_id'."})
                continue
            if cid in seen:
                errors.append({"code": "duplicate_custom_id", "line": n, "param": "custom_id",
                               "message": f"The custom_id for this request is a duplicate of another request: {cid}"})
                continue
            seen.add(cid)
            if obj.get("method") != "POST":
                errors.append({"code": "invalid_method", "line": n, "param": "method",
                               "message": "Only POST requests are supported in batches."})
                continue
            if obj.get("url") != endpoint:
                errors.append({"code": "mismatched_endpoint", "line": n, "param": "url",
                               "message": f"The url provided for this request does not match the batch endpoint "
                                          f"{endpoint}."})
                continue
            if not isinstance(body, dict):
                errors.append({"code": "missing_required_parameter", "line": n, "param": "body",
                               "message": "Missing required parameter: 'body'."})
                continue
            m = body.get("model")
            if model is None and isinstance(m, str):
                model = m
            elif isinstance(m, str) and m != model:
                errors.append({"code": "mismatched_model", "line": n, "param": "body.model",
                               "message": "The provided model in this line does not match the model of the other "
                                          "lines; a batch takes a single model."})
                continue
            builder = self.online._build_chat if kind == "chat" else self.online._build_responses
            call, invalid = parse_with(builder, body, _Req())
            lines.append(BatchLine(idx=len(lines), key=cid, body=body, call=call, invalid=invalid))
        if not lines and not errors:
            errors.append({"code": "empty_file", "line": None, "param": None,
                           "message": "The batch input file is empty."})
        if len(lines) > MAX_LINES:
            errors.append({"code": "too_many_tasks", "line": None, "param": None,
                           "message": f"The batch input file has more than the {MAX_LINES} maximum number of "
                                      "requests."})
        return lines, errors[:1000], model

    async def create(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return _err(400, str(exc))
        fid, endpoint, window = body.get("input_file_id"), body.get("endpoint"), body.get("completion_window")
        if endpoint not in _ALL_ENDPOINTS:
            return _err(400, f"Invalid value: {endpoint!r}. Supported values are: "
                        + ", ".join(f"'{e}'" for e in _ALL_ENDPOINTS) + ".", code="invalid_value", param="endpoint")
        if endpoint not in _ENDPOINTS:
            return _err(400, f"The emulator serves batches for {', '.join(_ENDPOINTS)} only.", param="endpoint")
        if window != "24h":
            return _err(400, f"Invalid value: {window!r}. Supported values are: '24h'.", code="invalid_value",
                        param="completion_window")
        f = self._find_file(fid) if isinstance(fid, str) else None
        if f is None:
            return _err(400, f"No such File object: {fid}", param="input_file_id")
        if f["purpose"] != "batch":
            return _err(400, f"File {fid} has purpose {f['purpose']!r}; a batch input file needs purpose 'batch'.",
                        param="input_file_id")
        if len(f["data"]) > MAX_BYTES:
            return _err(400, f"The batch input file is larger than the {MAX_BYTES // (1024 * 1024)} MB limit.",
                        param="input_file_id")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
            return _err(400, "Invalid 'metadata': at most 16 string key-value pairs.", param="metadata")
        lines, errors, model = self._parse_lines(f["data"], endpoint)
        entry = self.be.engine.catalog.find_wire("openai", model) if model else None
        bid = "batch_" + self.be.new_id(32, "0123456789abcdef")
        job = self.be.create(job_id=bid, provider="openai", entry=entry, lines=lines,
                             window_s=self.be.window_for(WINDOW_S), failure=errors or None,
                             meta={"endpoint": endpoint, "input_file_id": fid, "metadata": metadata,
                                   "model": model, "completion_window": "24h"},
                             on_end=self._write_outputs)
        return json_response(self.render(job))

    async def list(self, request: Request) -> Response:
        self.be.advance()
        limit = int(request.query_params.get("limit", "20") or 20)
        after = request.query_params.get("after")
        jobs = [j for j in self.be.jobs.values() if j.provider == "openai"][::-1]
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        page = jobs[:max(1, min(limit, 100))]
        data = [self.render(j) for j in page]
        return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": len(jobs) > len(page)})

    def _job(self, bid: str) -> BatchJob | None:
        j = self.be.jobs.get(bid)
        return j if j is not None and j.provider == "openai" else None

    async def retrieve(self, request: Request) -> Response:
        job = self._job(request.path_params["batch_id"])
        if job is None:
            return _err(404, f"No batch found with id '{request.path_params['batch_id']}'.", code=None)
        await self.be.settle(job)
        return json_response(self.render(job))

    async def cancel(self, request: Request) -> Response:
        job = self._job(request.path_params["batch_id"])
        if job is None:
            return _err(404, f"No batch found with id '{request.path_params['batch_id']}'.")
        await self.be.settle(job)
        if job.terminal:
            return _err(409, f"Cannot cancel a batch with status '{job.state}'.", code=None)
        self.be.cancel(job)
        return json_response(self.render(job))

    # -- rendering ------------------------------------------------------------------------------------------
    def _line_error_body(self) -> dict[str, Any]:
        return {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                          "type": "server_error", "param": None, "code": None}}

    async def _write_outputs(self, job: BatchJob) -> None:
        out: list[bytes] = []
        err: list[bytes] = []
        for i in job.order:
            ln = job.lines[i]
            rec: dict[str, Any] = {"id": f"batch_req_{ln.rid or self.be.new_id(20)}", "custom_id": ln.key}
            if ln.state == "ok":
                rec.update(response={"status_code": 200, "request_id": f"req_{ln.rid}", "body": ln.response},
                           error=None)
                out.append(json.dumps(rec).encode())
            elif ln.state == "error":
                assert ln.error is not None
                status, body = ln.error
                rec.update(response={"status_code": status, "request_id": f"req_{ln.rid}",
                                     "body": body or self._line_error_body()}, error=None)
                err.append(json.dumps(rec).encode())
            elif ln.state in ("expired", "cancelled"):
                msg = ("This request could not be executed before the completion window expired."
                       if ln.state == "expired" else "This request was not executed because the batch was cancelled.")
                rec.update(response=None, error={"code": f"batch_{ln.state}", "message": msg})
                err.append(json.dumps(rec).encode())
        if out:
            job.meta["output_file_id"] = self.add_file(b"\n".join(out) + b"\n", f"{job.id}_output.jsonl",
                                                       "batch_output")["id"]
        if err:
            job.meta["error_file_id"] = self.add_file(b"\n".join(err) + b"\n", f"{job.id}_error.jsonl",
                                                      "batch_output")["id"]

    def render(self, job: BatchJob) -> dict[str, Any]:
        c = job.counts()
        ts = {k: int(v) for k, v in job.times.items()}
        u = job.usage()
        failed = c["error"] + (c["expired"] + c["cancelled"] if job.terminal else 0)
        return {
            "id": job.id, "object": "batch", "endpoint": job.meta["endpoint"], "model": job.meta.get("model"),
            "errors": ({"object": "list", "data": job.failure} if job.failure and job.state == "failed" else None),
            "input_file_id": job.meta["input_file_id"], "completion_window": "24h", "status": job.state,
            "output_file_id": job.meta.get("output_file_id"), "error_file_id": job.meta.get("error_file_id"),
            "created_at": int(job.created_at), "in_progress_at": ts.get("in_progress_at"),
            "expires_at": int(job.created_at + job.window_s), "finalizing_at": ts.get("finalizing_at"),
            "completed_at": ts.get("completed_at"), "failed_at": ts.get("failed_at"),
            "expired_at": ts.get("expired_at"), "cancelling_at": ts.get("cancelling_at"),
            "cancelled_at": ts.get("cancelled_at"),
            "request_counts": {"total": c["total"], "completed": c["ok"], "failed": failed},
            "usage": {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
                      "output_tokens": u.output_tokens,
                      "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                      "total_tokens": u.input_tokens + u.output_tokens},
            "metadata": job.meta.get("metadata"),
        }
