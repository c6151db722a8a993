"""Bedrock batch inference backend (docs/providers.md, Batch APIs): JSONL on S3 + ``CreateModelInvocationJob``.

Each chunk is written to ``s3://{bucket}/{prefix}/{local id}/input.jsonl`` as
``{"recordId", "modelInput"}`` records (Converse bodies, ``modelInvocationType`` ``Converse``,
built by the online adapter so batch and flex send the same request). The job writes
``{prefix}/{local id}/out/{job id}/input.jsonl.out``; every processed record is there,
which is also how a stopped or expired job's partial output is salvaged.

Bedrock has a minimum job size (AWS: 100 records; ``min_items``): smaller chunks are not
submitted and the lane sends those items on the online tiers. ``clientRequestToken`` is
the local batch id, so submitting the same chunk twice (a retry after a crash) returns
the same job instead of paying twice; :meth:`find` looks the job up by name.

S3 is wherever ``s3_endpoint_url`` (or boto3's own settings, e.g. ``AWS_ENDPOINT_URL_S3``)
points; ``flextier run --emulate`` points it at the emulator's built-in S3 (path-style, at
``{emulator}/s3``). While emulating, both clients are refused unless they are on loopback
(:mod:`flextier._loopback`).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ...catalog import ModelEntry
from . import BedrockAdapter, classify_bedrock, make_client, text_from_body, usage_from_body
from ...errors import ProviderError
from ..batch_base import BatchBackend, BatchHandle, BatchItem, BatchStatus, ItemResult, retryable_status, wire_id

__all__ = ["BedrockBatch", "DEFAULT_ROLE", "MIN_RECORDS"]

DEFAULT_ROLE = "arn:aws:iam::123456789012:role/flextier-batch"
MIN_RECORDS = 100           # AWS's minimum number of records per batch inference job
_STATES = {"Submitted": "validating", "Validating": "validating", "Scheduled": "in_progress",
           "InProgress": "in_progress", "Completed": "completed", "PartiallyCompleted": "completed",
           "Failed": "failed", "Stopping": "cancelling", "Stopped": "cancelled", "Expired": "expired"}


class BedrockBatch(BatchBackend):
    provider = "bedrock"
    max_items = 50_000
    max_bytes = 1024 * 1024 * 1024

    def __init__(self, entry: ModelEntry, *, bucket: str, prefix: str = "flextier", role_arn: str = DEFAULT_ROLE,
                 client: Any = None, s3_client: Any = None, endpoint_url: str | None = None,
                 s3_endpoint_url: str | None = None, region: str = "us-east-1", timeout_hours: int = 24,
                 min_items: int = MIN_RECORDS) -> None:
        super().__init__(entry)
        from ..._loopback import check_client

        # boto3's default session (``session=boto3``), as before: its S3 handlers and settings.
        # While emulating, every client must be on loopback (boto3's defaults and AWS_ENDPOINT_URL_*
        # are real AWS): make_client checks the ones it builds, the ones handed in are checked here.
        if client is None:
            self.client = make_client(endpoint_url, service="bedrock", region=region, session=boto3,
                                      what="Bedrock control plane")
        else:
            check_client(client, "Bedrock control plane")
            self.client = client
        if s3_client is None:
            # path-style: a custom endpoint (the emulator's /s3, moto) has no per-bucket host names
            self.s3 = make_client(s3_endpoint_url, service="s3", region=region, session=boto3, what="S3",
                                  config=Config(s3={"addressing_style": "path"}) if s3_endpoint_url else None)
        else:
            check_client(s3_client, "S3")
            self.s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.role_arn = role_arn
        self.timeout_hours = timeout_hours
        self.min_items = min_items
        self._builder = BedrockAdapter(entry, None)

    def _base(self, local_id: str) -> str:
        return f"{self.prefix}/{local_id}" if self.prefix else local_id

    def line(self, item: BatchItem) -> dict[str, Any]:
        body = self._builder.build(item.request, "standard")
        body.pop("modelId", None)
        body.pop("serviceTier", None)
        return {"recordId": wire_id(item.item_id), "modelInput": body}

    def classify(self, exc: BaseException) -> ProviderError | None:
        return classify_bedrock(exc, "batch")

    def submit(self, chunk: list[BatchItem], local_id: str) -> BatchHandle:
        base = self._base(local_id)
        data = b"".join(json.dumps(self.line(it), separators=(",", ":")).encode() + b"\n" for it in chunk)
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/input.jsonl", Body=data)
        out_uri = f"s3://{self.bucket}/{base}/out/"
        resp = self.client.create_model_invocation_job(
            jobName=f"flextier-{local_id}", roleArn=self.role_arn, clientRequestToken=local_id,
            modelId=self.entry.model_id, modelInvocationType="Converse",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{self.bucket}/{base}/input.jsonl",
                                                   "s3InputFormat": "JSONL"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": out_uri}},
            timeoutDurationInHours=self.timeout_hours)
        return self.handle(resp["jobArn"], chunk, local_id, output_uri=out_uri)

    def poll(self, handle: BatchHandle) -> BatchStatus:
        j = self.client.get_model_invocation_job(jobIdentifier=handle.remote_id)
        raw = j["status"]
        return BatchStatus(state=_STATES.get(raw, "in_progress"), raw=raw, total=j.get("totalRecordCount"),
                           completed=j.get("successRecordCount"), failed=j.get("errorRecordCount"),
                           message=j.get("message"))

    def _records(self, handle: BatchHandle) -> Iterator[dict[str, Any]]:
        job_id = handle.remote_id.rsplit("/", 1)[-1]
        prefix = f"{self._base(handle.local_id)}/out/{job_id}/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(".jsonl.out"):
                    continue
                body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                for raw in body.decode("utf-8").splitlines():
                    if raw.strip():
                        yield json.loads(raw)

    def collect(self, handle: BatchHandle) -> Iterator[ItemResult]:
        state = self.poll(handle).state
        ids = self.by_wire_id(handle)
        seen: set[str] = set()
        for rec in self._records(handle):
            item_id = ids.get(str(rec.get("recordId")))
            if item_id is None or item_id in seen:
                continue
            seen.add(item_id)
            out, err = rec.get("modelOutput"), rec.get("error")
            if out is not None and not err:
                yield ItemResult(item_id=item_id, ok=True, body=out, usage=usage_from_body(out.get("usage")),
                                 text=text_from_body(out))
            else:
                e = err or {}
                try:
                    status: int | None = int(e.get("errorCode"))
                except (TypeError, ValueError):
                    status = None
                yield ItemResult.failure(item_id, "error", str(e.get("errorMessage") or "record failed"),
                                         status=status, retryable=retryable_status(status))
        yield from self.fill_missing(handle, seen, state)

    def cancel(self, handle: BatchHandle) -> None:
        try:
            self.client.stop_model_invocation_job(jobIdentifier=handle.remote_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ConflictException"):
                raise           # those two mean the job has already ended or is stopping

    def find(self, local_id: str, item_ids: list[str]) -> BatchHandle | None:
        name = f"flextier-{local_id}"
        resp = self.client.list_model_invocation_jobs(nameContains=name, maxResults=100)
        for j in resp.get("invocationJobSummaries", []):
            if j.get("jobName") == name:
                out = j["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
                return self.handle(j["jobArn"], item_ids, local_id, output_uri=out)
        return None
