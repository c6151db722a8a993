"""Bedrock batch inference on the emulator: the ``bedrock`` control plane (docs/providers.md, Batch APIs).

``POST /model-invocation-job`` (CreateModelInvocationJob), ``GET /model-invocation-job/{id}``,
``POST /model-invocation-job/{id}/stop`` and ``GET /model-invocation-jobs``, with the
shapes of botocore's ``bedrock`` 2023-04-20 model. Input and output live on S3: the
emulator's own in-memory S3 (:mod:`.s3`, served at ``{emulator}/s3``) by default, so a
rehearsal is complete offline; or, when the ``s3_endpoint_url`` batch knob is set, another
S3 on loopback read and written through boto3 (moto's server in the tests that check real-S3
compatibility). A non-loopback knob is refused: the emulator never touches real AWS. Input lines are ``{"recordId", "modelInput"}``; the output is
``{output}/{jobId}/{input file}.out`` with ``{"recordId", "modelInput", "modelOutput"}``
or ``{"recordId", "modelInput", "error": {"errorCode", "errorMessage"}}`` lines for the
records that were processed (a stopped or expired job has partial output), plus
``manifest.json.out`` with the counts and token totals.

``modelInvocationType`` ``Converse`` takes Converse bodies; ``InvokeModel`` (the default)
takes model-native bodies, here Anthropic Messages (``anthropic_version``) or Amazon Nova
(``messages`` with content blocks), answered in the same native shape.
"""
from __future__ import annotations

import asyncio
import json
import posixpath
import re
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .batch_core import BatchEngine, BatchJob, BatchLine, parse_with, rfc3339
from .bedrock_api import BedrockAPI
from .http import BadJSON, json_response, read_json
from .s3 import S3Store, s3_store
from .wire import Call

__all__ = ["BedrockBatchAPI", "job_arn"]

ACCOUNT = "123456789012"
REGION = "us-east-1"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
_ROLE = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
_S3 = re.compile(r"^s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(.*))?$")
_ID = re.compile(r"(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?([a-z0-9]{12})$")


_SUBMIT_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                  409: "ConflictException", 429: "ThrottlingException", 500: "InternalServerException",
                  503: "ServiceUnavailableException"}


def job_arn(job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-invocation-job/{job_id}"


def _err(status: int, error_type: str, message: str) -> Response:
    return json_response({"message": message}, status,
                         {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                          "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"})


class _StoreS3:
    """The emulator's own S3, in-process (what the client uploaded through ``/s3`` is what the job reads)."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def read(self, bucket: str, key: str) -> bytes:
        return self.store.read(bucket, key)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return self.store.keys(bucket, prefix)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.store.put(bucket, key, data, "application/octet-stream")


class _BotoS3:
    """Another S3 on loopback (the ``s3_endpoint_url`` knob), through boto3."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return [o["Key"] for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    out = []
    for b in content or []:
        if isinstance(b, dict) and isinstance(b.get("text"), str):
            out.append({"text": b["text"]})
    return out


def anthropic_to_converse(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages body (InvokeModel on Claude) as the equivalent Converse body."""
    conv: dict[str, Any] = {"messages": [{"role": m.get("role"), "content": _text_blocks(m.get("content"))}
                                         for m in body.get("messages") or [] if isinstance(m, dict)]}
    if body.get("system"):
        conv["system"] = _text_blocks(body["system"])
    if "max_tokens" in body:
        conv["inferenceConfig"] = {"maxTokens": body["max_tokens"]}
    return conv


class BedrockBatchAPI:
    def __init__(self, be: BatchEngine) -> None:
        self.be = be
        self.online = BedrockAPI(be.engine)
        self._tokens: dict[str, str] = {}      # clientRequestToken -> job id

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/model-invocation-job", self.create, methods=["POST"]),
            Route("/model-invocation-jobs", self.list, methods=["GET"]),
            Route("/model-invocation-job/{job:path}/stop", self.stop, methods=["POST"]),
            Route("/model-invocation-job/{job:path}", self.get, methods=["GET"]),
        ]

    # -- S3 --------------------------------------------------------------------------------------------
    def _s3(self) -> Any:
        """Where jobs read and write: the built-in S3, or boto3 at the ``s3_endpoint_url`` knob (loopback only)."""
        k = self.be.knobs
        if not k.s3_endpoint_url:
            return _StoreS3(s3_store(self.be.engine))
        from .._loopback import check_endpoint

        check_endpoint(k.s3_endpoint_url, "emulator's S3 (batch knob s3_endpoint_url)", always=True)
        import boto3
        from botocore.config import Config

        return _BotoS3(boto3.client("s3", endpoint_url=k.s3_endpoint_url, region_name=k.s3_region,
                                    aws_access_key_id="emulator", aws_secret_access_key="emulator",
                                    config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                                  s3={"addressing_style": "path"})))

    def _read_input(self, uri: str) -> list[tuple[str, bytes]]:
        """(key, bytes) of every JSONL object at ``uri`` (a file, or a prefix holding files)."""
        m = _S3.match(uri)
        if not m:
            raise ValueError(f"invalid S3 URI {uri}")
        bucket, key = m.group(1), m.group(2) or ""
        s3 = self._s3()
        if key and not key.endswith("/"):
            return [(key, s3.read(bucket, key))]
        return [(k, s3.read(bucket, k)) for k in s3.keys(bucket, key) if k.endswith(".jsonl")]

    def _write_output(self, job: BatchJob) -> None:
        m = _S3.match(job.meta["output_uri"])
        assert m is not None
        bucket, prefix = m.group(1), (m.group(2) or "").rstrip("/")
        base = f"{prefix}/{job.meta['job_id']}" if prefix else job.meta["job_id"]
        s3 = self._s3()
        by_file: dict[str, list[bytes]] = {}
        counts = {"totalRecordCount": len(job.lines), "processedRecordCount": 0, "successRecordCount": 0,
                  "errorRecordCount": 0, "inputTokenCount": 0, "outputTokenCount": 0}
        for ln in job.lines:
            if ln.state not in ("ok", "error"):
                continue
            rec: dict[str, Any] = {"recordId": ln.key, "modelInput": ln.body}
            counts["processedRecordCount"] += 1
            if ln.state == "ok":
                rec["modelOutput"] = ln.response
                counts["successRecordCount"] += 1
                if ln.usage is not None:
                    counts["inputTokenCount"] += ln.usage.input_tokens
                    counts["outputTokenCount"] += ln.usage.output_tokens
            else:
                assert ln.error is not None
                status, body = ln.error
                rec["error"] = {"errorCode": status, "errorMessage": (body or {}).get(
                    "message", "The server encountered an internal error.")}
                counts["errorRecordCount"] += 1
            by_file.setdefault(job.meta["line_files"][ln.idx], []).append(json.dumps(rec).encode())
        for name in dict.fromkeys(job.meta["line_files"]):
            data = b"\n".join(by_file.get(name, [])) + (b"\n" if by_file.get(name) else b"")
            s3.put(bucket, f"{base}/{posixpath.basename(name)}.out", data)
        s3.put(bucket, f"{base}/manifest.json.out", json.dumps(counts).encode())

    async def _on_end(self, job: BatchJob) -> None:
        if job.state == "failed":
            return
        try:
            await asyncio.to_thread(self._write_output, job)
        except Exception as exc:  # noqa: BLE001 - an unwritable output fails the job, as on AWS
            job.state = "failed"
            job.meta["message"] = f"Unable to write output to {job.meta['output_uri']}: {exc}"

    # -- parsing ------------------------------------------------------------------------------------------
    def _line(self, idx: int, key: str, model_input: Any, model_id: str, invocation: str) -> BatchLine:
        if not isinstance(model_input, dict):
            return BatchLine(idx=idx, key=key, body={}, invalid=(400, {"message": "modelInput must be an object"}))
        flavour = "converse"
        body = model_input
        if invocation == "InvokeModel":
            if "anthropic_version" in model_input:
                flavour, body = "anthropic", anthropic_to_converse(model_input)
            else:
                flavour = "nova"
                body = {k: v for k, v in model_input.items() if k in ("messages", "system", "inferenceConfig")}
        call, invalid = parse_with(self.online._build, body, model_id, False)
        if call is not None:
            call = self._wrap(call, flavour)
        return BatchLine(idx=idx, key=key, body=model_input, call=call, invalid=invalid)

    @staticmethod
    def _wrap(call: Call, flavour: str) -> Call:
        """Render a batch answer in the record's own format, without an online service tier."""
        inner = call.render

        def render(sess: Any) -> dict[str, Any]:
            out = inner(sess)
            out.pop("serviceTier", None)
            if flavour == "converse":
                return out
            u = out.get("usage") or {}
            if flavour == "nova":
                return {"output": out["output"], "stopReason": out.get("stopReason"),
                        "usage": {"inputTokens": u.get("inputTokens", 0), "outputTokens": u.get("outputTokens", 0),
                                  "totalTokens": u.get("totalTokens", 0)}}
            text = "".join(b.get("text", "") for b in out["output"]["message"]["content"])
            return {"id": f"msg_bdrk_{sess.rid}", "type": "message", "role": "assistant",
                    "model": call.req.model_wire, "content": [{"type": "text", "text": text}],
                    "stop_reason": out.get("stopReason"), "stop_sequence": None,
                    "usage": {"input_tokens": u.get("inputTokens", 0), "output_tokens": u.get("outputTokens", 0)}}

        return Call(call.req, render, None, headers=call.headers)

    # -- handlers -------------------------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        try:
            body = await read_json(request)
        except BadJSON as exc:
            return _err(400, "ValidationException", str(exc))
        forced = self.be.knobs.submit_error       # the submit_error knob: the service refuses the job
        if forced:
            kind = _SUBMIT_ERRORS.get(forced, "InternalServerException")
            return _err(forced, kind, f"{kind}: the emulator refuses new batch jobs (batch knob submit_error)")
        for f in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
            if f not in body:
                return _err(400, "ValidationException", f"1 validation error detected: Value null at '{f}' failed "
                                                         "to satisfy constraint: Member must not be null")
        token = body.get("clientRequestToken")
        if token and token in self._tokens:
            return json_response({"jobArn": job_arn(self._tokens[token])})
        name, role, model_id = body["jobName"], body["roleArn"], body["modelId"]
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            return _err(400, "ValidationException", f"1 validation error detected: Value '{name}' at 'jobName' "
                                                     "failed to satisfy constraint: Member must satisfy regular "
                                                     "expression pattern")
        if not isinstance(role, str) or not _ROLE.match(role):
            return _err(400, "ValidationException", f"1 validation error detected: Value '{role}' at 'roleArn' "
                                                     "failed to satisfy constraint")
        if any(j.meta.get("job_name") == name for j in self.be.jobs.values() if j.provider == "bedrock"):
            return _err(400, "ConflictException", f"A model invocation job named {name} already exists.")
        entry = self.be.engine.catalog.find_wire("bedrock", str(model_id))
        if entry is None or not entry.supports_batch:
            return _err(400, "ValidationException", f"The provided model identifier {model_id} is invalid or does "
                                                     "not support batch inference.")
        hours = body.get("timeoutDurationInHours", 24)
        if not isinstance(hours, int) or not 24 <= hours <= 168:
            return _err(400, "ValidationException", "timeoutDurationInHours must be between 24 and 168.")
        invocation = body.get("modelInvocationType", "InvokeModel")
        if invocation not in ("InvokeModel", "Converse"):
            return _err(400, "ValidationException", f"Invalid modelInvocationType {invocation}.")
        in_uri = ((body["inputDataConfig"] or {}).get("s3InputDataConfig") or {}).get("s3Uri")
        out_uri = ((body["outputDataConfig"] or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
        if not isinstance(in_uri, str) or not _S3.match(in_uri) or not isinstance(out_uri, str) \
                or not _S3.match(out_uri):
            return _err(400, "ValidationException", "inputDataConfig and outputDataConfig need valid s3Uri values.")
        job_id = self.be.new_id(12)
        failure: list[dict[str, Any]] | None = None
        lines: list[BatchLine] = []
        line_files: list[str] = []
        try:
            files = await asyncio.to_thread(self._read_input, in_uri)
        except Exception as exc:  # noqa: BLE001 - unreadable input fails the job, as on AWS
            files, failure = [], [{"message": f"Unable to read input data from {in_uri}: {exc}"}]
        seen: set[str] = set()
        for fname, data in files:
            for n, raw in enumerate(data.splitlines(), start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    failure = [{"message": f"Invalid JSON at line {n} of {fname}."}]
                    break
                rid = str(obj.get("recordId") or f"{len(lines) + 1:011d}") if isinstance(obj, dict) else ""
                if rid in seen:
                    failure = [{"message": f"Duplicate recordId {rid} in {fname}."}]
                    break
                seen.add(rid)
                lines.append(self._line(len(lines), rid, obj.get("modelInput") if isinstance(obj, dict) else None,
                                        entry.model_id, invocation))
                line_files.append(fname)
        if not failure and not lines:
            failure = [{"message": f"No records found in {in_uri}."}]
        if not failure and len(lines) < self.be.knobs.bedrock_min_records:
            failure = [{"message": f"The job has {len(lines)} records; the minimum is "
                                   f"{self.be.knobs.bedrock_min_records}."}]
        job = self.be.create(job_id=job_id, provider="bedrock", entry=entry, lines=lines,
                             window_s=self.be.window_for(hours * 3600.0), failure=failure,
                             meta={"job_id": job_id, "job_name": name, "role": role, "model_id": model_id,
                                   "input_uri": in_uri, "output_uri": out_uri, "hours": hours, "token": token,
                                   "invocation": invocation, "line_files": line_files,
                                   "input_config": body["inputDataConfig"], "output_config": body["outputDataConfig"],
                                   "message": failure[0]["message"] if failure else None},
                             on_end=self._on_end)
        if token:
            self._tokens[token] = job_id
        return json_response({"jobArn": job_arn(job.id)})

    def _job(self, ident: str) -> BatchJob | None:
        m = _ID.match(unquote(ident))
        if not m:
            return None
        j = self.be.jobs.get(m.group(1))
        return j if j is not None and j.provider == "bedrock" else None

    async def get(self, request: Request) -> Response:
        job = self._job(request.path_params["job"])
        if job is None:
            return _err(404, "ResourceNotFoundException", "The specified model invocation job was not found.")
        await self.be.settle(job)
        return json_response(self.render(job))

    async def stop(self, request: Request) -> Response:
        job = self._job(request.path_params["job"])
        if job is None:
            return _err(404, "ResourceNotFoundException", "The specified model invocation job was not found.")
        await self.be.settle(job)
        if job.terminal or job.state == "cancelling":
            return _err(400, "ValidationException", f"The job is {self.status(job)} and cannot be stopped.")
        self.be.cancel(job)
        return json_response({})

    async def list(self, request: Request) -> Response:
        self.be.advance()
        q = request.query_params
        jobs = [j for j in self.be.jobs.values() if j.provider == "bedrock"][::-1]
        if q.get("nameContains"):
            jobs = [j for j in jobs if q["nameContains"] in j.meta["job_name"]]
        if q.get("statusEquals"):
            jobs = [j for j in jobs if self.status(j) == q["statusEquals"]]
        n = int(q.get("maxResults", "100") or 100)
        return json_response({"invocationJobSummaries": [self.render(j) for j in jobs[:n]]})

    # -- rendering -----------------------------------------------------------------------------------------
    def status(self, job: BatchJob) -> str:
        s = job.state
        if s == "validating":
            return "Submitted" if job.t - job.created_at < self.be.knobs.validate_s / 2 else "Validating"
        if s == "in_progress":
            return "Scheduled" if job.pos == 0 and job.progress == 0 else "InProgress"
        if s == "finalizing":
            return "InProgress"
        if s == "completed":
            return "PartiallyCompleted" if job.counts()["error"] else "Completed"
        return {"failed": "Failed", "cancelling": "Stopping", "cancelled": "Stopped", "expired": "Expired"}[s]

    def render(self, job: BatchJob) -> dict[str, Any]:
        m = job.meta
        c = job.counts()
        end_t = next((job.times[k] for k in ("completed_at", "expired_at", "cancelled_at", "failed_at")
                      if k in job.times), None)
        out: dict[str, Any] = {
            "jobArn": job_arn(job.id), "jobName": m["job_name"], "modelId": m["model_id"], "roleArn": m["role"],
            "status": self.status(job), "submitTime": rfc3339(job.created_at), "lastModifiedTime": rfc3339(job.t),
            "inputDataConfig": m["input_config"], "outputDataConfig": m["output_config"],
            "timeoutDurationInHours": m["hours"], "jobExpirationTime": rfc3339(job.created_at + job.window_s),
            "modelInvocationType": m["invocation"], "totalRecordCount": c["total"],
            "processedRecordCount": c["ok"] + c["error"], "successRecordCount": c["ok"],
            "errorRecordCount": c["error"],
        }
        if m.get("token"):
            out["clientRequestToken"] = m["token"]
        if m.get("message"):
            out["message"] = m["message"]
        if end_t is not None:
            out["endTime"] = rfc3339(end_t)
        return out
