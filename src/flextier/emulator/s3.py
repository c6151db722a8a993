"""A small in-memory S3 inside the emulator, so a Bedrock batch rehearsal never leaves loopback.

Why here and not moto: ``flextier run --emulate`` and :func:`flextier.emulator.serve` must be
complete offline. Bedrock batch jobs read their input from S3 and write their
output there; before this module the client's S3 calls went wherever boto3's defaults pointed
(real AWS). Now the emulator serves the S3 operations the Bedrock batch flow uses, path-style,
on its own port under ``/s3``::

    boto3.client("s3", endpoint_url=emu.s3_endpoint_url,
                 config=Config(s3={"addressing_style": "path"}))

Operations (the subset of the S3 REST API the batch flow and a user inspecting its output
need): CreateBucket and HeadBucket (``PUT``/``HEAD /s3/{bucket}``), ListBuckets
(``GET /s3``), ListObjectsV2 (``GET /s3/{bucket}?list-type=2``: prefix, delimiter,
max-keys, continuation-token, start-after, encoding-type=url), PutObject, GetObject,
HeadObject and DeleteObject (``PUT``/``GET``/``HEAD``/``DELETE /s3/{bucket}/{key}``).
Errors are S3's XML documents (``NoSuchBucket``, ``NoSuchKey``...) with S3's statuses.
Signatures are not checked (there is no account to check them against). Uploads in
``aws-chunked`` encoding (botocore's streaming checksums) are decoded.

The emulated Bedrock batch jobs (:mod:`.batch_bedrock`) read and write the same
:class:`S3Store` in-process, so what the client uploads is exactly what the job reads.
Objects live in memory for the emulator's lifetime; one object is capped at
:data:`MAX_OBJECT` bytes (413 ``EntityTooLarge`` beyond it).
"""
from __future__ import annotations

import hashlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["S3Store", "S3Error", "s3_store", "s3_routes", "MAX_OBJECT", "PREFIX"]

PREFIX = "/s3"                      # mount point on the emulator's port (path-style addressing)
MAX_OBJECT = 1024 * 1024 * 1024     # Bedrock's batch input limit (1 GB) is the largest object the flow needs
_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_REQUEST_ID = "EMULATOR0000000"


class S3Error(Exception):
    """An S3 error: its code, HTTP status and message, rendered as S3's XML error document."""

    def __init__(self, code: str, status: int, message: str, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.status, self.message, self.extra = code, status, message, extra

    def response(self, head: bool = False) -> Response:
        parts = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.extra.items())
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{escape(self.message)}</Message>{parts}<RequestId>{_REQUEST_ID}</RequestId></Error>")
        return Response(b"" if head else body.encode(), self.status, media_type="application/xml",
                        headers={"x-amz-request-id": _REQUEST_ID})


@dataclass
class S3Object:
    data: bytes
    etag: str
    modified: float
    content_type: str = "binary/octet-stream"


@dataclass
class _Bucket:
    created: float
    objects: dict[str, S3Object] = field(default_factory=dict)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _http_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


class S3Store:
    """Buckets of objects in memory. Thread-safe: the batch jobs read it from worker threads."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    # -- buckets -----------------------------------------------------------------------------
    def create_bucket(self, name: str) -> bool:
        """Create ``name``; False if it already exists (yours: S3's ``BucketAlreadyOwnedByYou``)."""
        if not 3 <= len(name) <= 63 or not all(c.islower() or c.isdigit() or c in "-." for c in name):
            raise S3Error("InvalidBucketName", 400, "The specified bucket is not valid.", BucketName=name)
        with self._lock:
            if name in self._buckets:
                return False
            self._buckets[name] = _Bucket(created=time.time())
            return True

    def has_bucket(self, name: str) -> bool:
        with self._lock:
            return name in self._buckets

    def buckets(self) -> list[tuple[str, float]]:
        with self._lock:
            return sorted((n, b.created) for n, b in self._buckets.items())

    def _bucket(self, name: str) -> _Bucket:
        b = self._buckets.get(name)
        if b is None:
            raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist", BucketName=name)
        return b

    # -- objects ------------------------------------------------------------------------------
    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> str:
        if len(data) > MAX_OBJECT:
            raise S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size")
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        with self._lock:
            self._bucket(bucket).objects[key] = S3Object(bytes(data), etag, time.time(),
                                                         content_type or "binary/octet-stream")
        return etag

    def get(self, bucket: str, key: str) -> S3Object:
        with self._lock:
            obj = self._bucket(bucket).objects.get(key)
        if obj is None:
            raise S3Error("NoSuchKey", 404, "The specified key does not exist.", Key=key)
        return obj

    def read(self, bucket: str, key: str) -> bytes:
        return self.get(bucket, key).data

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._bucket(bucket).objects.pop(key, None)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, in S3's order (UTF-8 binary order)."""
        with self._lock:
            names = [k for k in self._bucket(bucket).objects if k.startswith(prefix)]
        return sorted(names, key=lambda k: k.encode("utf-8"))

    def list(self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
             max_keys: int = 1000) -> tuple[list[tuple[str, S3Object]], list[str], bool]:
        """(objects, common prefixes, truncated) after ``start_after``, at most ``max_keys`` entries."""
        with self._lock:
            objs = dict(self._bucket(bucket).objects)
        names = sorted((k for k in objs if k.startswith(prefix) and k.encode() > start_after.encode()),
                       key=lambda k: k.encode("utf-8"))
        contents: list[tuple[str, S3Object]] = []
        commons: list[str] = []
        for k in names:
            if delimiter:
                i = k.find(delimiter, len(prefix))
                if i >= 0:
                    cp = k[: i + len(delimiter)]
                    if cp in commons:
                        continue
                    if len(contents) + len(commons) >= max_keys:
                        return contents, commons, True
                    commons.append(cp)
                    continue
            if len(contents) + len(commons) >= max_keys:
                return contents, commons, True
            contents.append((k, objs[k]))
        return contents, commons, False


_STORES: "weakref.WeakKeyDictionary[Any, S3Store]" = weakref.WeakKeyDictionary()


def s3_store(engine: "Engine") -> S3Store:
    """The S3 of an emulator engine (created on first use), shared by its routes and batch jobs."""
    st = _STORES.get(engine)
    if st is None:
        st = _STORES[engine] = S3Store()
    return st


# -- the HTTP side ---------------------------------------------------------------------------------

def _decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an ``aws-chunked`` upload: ``hex-size[;ext]\\r\\ndata\\r\\n`` ... ``0\\r\\n`` + trailers."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise S3Error("IncompleteBody", 400, "The request body terminated unexpectedly")
        try:
            size = int(body[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise S3Error("InvalidRequest", 400, "Malformed aws-chunked encoding") from None
        if size == 0:
            return bytes(out)
        start = eol + 2
        if start + size > len(body):
            raise S3Error("IncompleteBody", 400, "The request body terminated unexpectedly")
        out += body[start:start + size]
        pos = start + size + 2


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("x-amz-decoded-content-length") or request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size")
    chunks: list[bytes] = []
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit + 64 * 1024:           # + room for aws-chunked framing
            raise S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size")
        chunks.append(chunk)
    body = b"".join(chunks)
    enc = request.headers.get("content-encoding", "")
    sha = request.headers.get("x-amz-content-sha256", "")
    if "aws-chunked" in enc or sha.startswith("STREAMING-"):
        body = _decode_aws_chunked(body)
    return body


def _xml(body: str, status: int = 200) -> Response:
    return Response(('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(), status,
                    media_type="application/xml", headers={"x-amz-request-id": _REQUEST_ID})


class S3API:
    """The S3 REST routes over one :class:`S3Store`."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def routes(self) -> list[BaseRoute]:
        return [Route(PREFIX, self.service, methods=["GET"]),
                Route(PREFIX + "/", self.service, methods=["GET"]),
                Route(PREFIX + "/{bucket}", self.bucket, methods=["GET", "PUT", "HEAD", "DELETE"]),
                Route(PREFIX + "/{bucket}/", self.bucket, methods=["GET", "PUT", "HEAD", "DELETE"]),
                Route(PREFIX + "/{bucket}/{key:path}", self.object, methods=["GET", "PUT", "HEAD", "DELETE"])]

    async def service(self, request: Request) -> Response:
        items = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{_iso(t)}</CreationDate></Bucket>"
                        for n, t in self.store.buckets())
        return _xml(f'<ListAllMyBucketsResult xmlns="{_NS}"><Owner><ID>emulator</ID></Owner>'
                    f"<Buckets>{items}</Buckets></ListAllMyBucketsResult>")

    async def bucket(self, request: Request) -> Response:
        name = request.path_params["bucket"]
        head = request.method == "HEAD"
        try:
            if request.method == "PUT":
                await _read_body(request, 64 * 1024)      # CreateBucketConfiguration: read and ignored
                if not self.store.create_bucket(name):
                    raise S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named "
                                  "bucket succeeded and you already own it.", BucketName=name)
                return Response(b"", 200, headers={"location": f"/{name}", "x-amz-request-id": _REQUEST_ID})
            if head:
                if not self.store.has_bucket(name):
                    raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist", BucketName=name)
                return Response(b"", 200, headers={"x-amz-bucket-region": "us-east-1",
                                                   "x-amz-request-id": _REQUEST_ID})
            if request.method == "DELETE":
                if self.store.keys(name):
                    raise S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty",
                                  BucketName=name)
                with self.store._lock:
                    self.store._buckets.pop(name, None)
                return Response(b"", 204)
            return self._list(request, name)
        except S3Error as exc:
            return exc.response(head)

    def _list(self, request: Request, name: str) -> Response:
        q = request.query_params
        if "location" in q:
            self.store._bucket(name)
            return _xml(f'<LocationConstraint xmlns="{_NS}"/>')
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        token, start_after = q.get("continuation-token", ""), q.get("start-after", "")
        url = q.get("encoding-type") == "url"
        try:
            max_keys = max(0, min(1000, int(q.get("max-keys", "1000"))))
        except ValueError:
            raise S3Error("InvalidArgument", 400, "Provided max-keys not an integer or within integer range")
        after = token or start_after
        contents, commons, truncated = self.store.list(name, prefix=prefix, delimiter=delimiter,
                                                       start_after=after, max_keys=max_keys)

        def enc(s: str) -> str:
            return quote(s, safe="/") if url else escape(s)

        parts = [f'<ListBucketResult xmlns="{_NS}"><Name>{escape(name)}</Name><Prefix>{enc(prefix)}</Prefix>',
                 f"<KeyCount>{len(contents) + len(commons)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"]
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if start_after:
            parts.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
        if truncated:
            last = max([k for k, _ in contents] + commons, key=lambda k: k.encode())
            parts.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
        for k, o in contents:
            parts.append(f"<Contents><Key>{enc(k)}</Key><LastModified>{_iso(o.modified)}</LastModified>"
                         f"<ETag>{escape(o.etag)}</ETag><Size>{len(o.data)}</Size>"
                         f"<StorageClass>STANDARD</StorageClass></Contents>")
        for cp in commons:
            parts.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return _xml("".join(parts))

    async def object(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        head = request.method == "HEAD"
        try:
            if request.method == "PUT":
                if request.headers.get("x-amz-copy-source"):
                    raise S3Error("NotImplemented", 501, "CopyObject is not emulated")
                data = await _read_body(request, MAX_OBJECT)
                etag = self.store.put(bucket, key, data, request.headers.get("content-type"))
                return Response(b"", 200, headers={"etag": etag, "x-amz-request-id": _REQUEST_ID})
            if request.method == "DELETE":
                self.store.delete(bucket, key)
                return Response(b"", 204, headers={"x-amz-request-id": _REQUEST_ID})
            obj = self.store.get(bucket, key)
            headers = {"etag": obj.etag, "last-modified": _http_date(obj.modified), "accept-ranges": "bytes",
                       "x-amz-request-id": _REQUEST_ID}
            if head:
                headers["content-length"] = str(len(obj.data))
                return Response(b"", 200, headers=headers, media_type=obj.content_type)
            return Response(obj.data, 200, headers=headers, media_type=obj.content_type)
        except S3Error as exc:
            return exc.response(head)


def s3_routes(engine: "Engine") -> list[BaseRoute]:
    """The S3 routes of ``engine``'s emulator (a route factory for :func:`~.app.build_app`)."""
    return S3API(s3_store(engine)).routes()
