"""Streamed reading and validation of job files.

A job file may hold millions of lines, so nothing here ever loads a whole file: every
reader is a generator that yields one :class:`JobItem` (a valid line) or one
:class:`InvalidLine` (a malformed one, with file, line and field) at a time. The store
consumes that stream during import (the "first pass"), so all validation happens before
a single request is sent, and memory stays flat whatever the input size.

Accepted shapes:

* **OpenAI batch-file lines, as they are**:
  ``{"custom_id", "method": "POST", "url": "/v1/chat/completions" | "/v1/responses", "body": {...}}``.
* **Simple lines**: ``{"id", "prompt"}`` or ``{"id", "messages"}`` (model and parameters come from the job).
* **CSV / Parquet** rows, turned into a prompt by ``--prompt-template`` (``{column}`` placeholders)
  or taken from a ``prompt`` column. Parquet needs pyarrow (the ``parquet`` extra), imported lazily.

What is stored for an item is a JSON *line object* in one of the two JSONL shapes above
(for JSONL input, the original line text, untouched), so the batch lane can later reuse
OpenAI batch lines byte for byte. :func:`request_to_call` turns it into a
:class:`~flextier._types.CallRequest` when the item is sent.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from ..errors import InvalidInput, UserInputError  # InvalidInput re-exported from its home

if TYPE_CHECKING:  # pragma: no cover
    from .._types import CallRequest

#: A line longer than this is rejected (and skipped over without being held in memory).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: Longest accepted id / custom_id.
MAX_ID_CHARS = 512
#: How many individual errors are kept for reporting; the rest are only counted.
MAX_REPORTED_ERRORS = 20

BATCH_URLS = {"/v1/chat/completions": "chat", "/v1/responses": "responses"}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_SIMPLE_KEYS = {"id", "prompt", "messages", "system", "params", "metadata"}


@dataclass(slots=True)
class JobItem:
    """One valid input record: its id, where it came from, and its stored request text."""

    custom_id: str
    line: int
    request: str  # JSON text of a batch line or a simple line


@dataclass(slots=True)
class InvalidLine:
    """One malformed input record. ``custom_id`` is set when it could be read (for duplicates)."""

    line: int
    field: str | None
    message: str
    custom_id: str | None = None

    def to_error(self, file: str) -> UserInputError:
        return UserInputError(self.message, file=file, line=self.line, field=self.field)


class _Fatal(Exception):
    """A problem that stops reading a file altogether (e.g. a CSV that is not UTF-8)."""

    def __init__(self, line: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.line, self.field, self.message = line, field, message


# --------------------------------------------------------------------------------------
# format detection and hashing
# --------------------------------------------------------------------------------------

def detect_format(path: str | os.PathLike[str]) -> str:
    """``jsonl``, ``csv`` or ``parquet``, from the file extension (JSONL by default)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Streaming SHA-256 of a file; identifies the input so a resume can refuse a changed file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# field validation (shared by every format)
# --------------------------------------------------------------------------------------

def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _check_id(value: Any, field: str) -> tuple[str | None, str | None]:
    """(id, error message): ids are non-empty strings (integers are accepted and stringified)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"must be a string, got {_type_name(value)}"
    s = str(value)
    if not s.strip():
        return None, "must not be empty"
    if len(s) > MAX_ID_CHARS:
        return None, f"is longer than {MAX_ID_CHARS} characters"
    return s, None


def _check_messages(msgs: Any, field: str) -> tuple[str, str] | None:
    """(field, message) of the first problem in a chat ``messages`` list, or None."""
    if not isinstance(msgs, list):
        return field, f"must be an array of messages, got {_type_name(msgs)}"
    if not msgs:
        return field, "must not be empty"
    for i, m in enumerate(msgs):
        f = f"{field}[{i}]"
        if not isinstance(m, dict):
            return f, f"must be an object with role and content, got {_type_name(m)}"
        role = m.get("role")
        if not isinstance(role, str):
            return f"{f}.role", "is required and must be a string"
        if role not in _ROLES:
            return f"{f}.role", f"unknown role {role[:40]!r}"
        content = m.get("content")
        if content is None:
            if role == "assistant" and ("tool_calls" in m or "function_call" in m):
                continue
            return f"{f}.content", "is required"
        if not isinstance(content, (str, list)):
            return f"{f}.content", f"must be a string or an array of parts, got {_type_name(content)}"
        if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            return f"{f}.content", "parts must be objects"
    return None


def _has_lone_surrogate(obj: Any) -> bool:
    """JSON may carry ``\\ud800``-style escapes that Python accepts but UTF-8 cannot encode."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def validate_record(obj: Any) -> tuple[str | None, str | None, str | None]:
    """Check one parsed JSONL record. Returns ``(custom_id, field, error)``; error None when valid."""
    if not isinstance(obj, dict):
        return None, None, f"each line must be a JSON object, got {_type_name(obj)}"
    if "custom_id" in obj or "body" in obj or "method" in obj or "url" in obj:
        cid, err = _check_id(obj.get("custom_id"), "custom_id")
        if err:
            return None, "custom_id", ("is required" if "custom_id" not in obj else err)
        if obj.get("method") != "POST":
            return cid, "method", 'must be "POST"'
        url = obj.get("url")
        if url not in BATCH_URLS:
            return cid, "url", f"must be one of {', '.join(BATCH_URLS)}, got {str(url)[:60]!r}"
        body = obj.get("body")
        if not isinstance(body, dict):
            return cid, "body", f"must be an object, got {_type_name(body)}"
        if BATCH_URLS[url] == "chat":
            bad = _check_messages(body.get("messages"), "body.messages")
            if bad:
                return cid, bad[0], bad[1]
        else:
            inp = body.get("input")
            if not isinstance(inp, (str, list)) or not inp:
                return cid, "body.input", "is required (a string or an array of input items)"
        mt = body.get("max_tokens", body.get("max_completion_tokens", body.get("max_output_tokens")))
        if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or mt <= 0):
            return cid, "body.max_tokens", "must be a positive integer"
        return cid, None, None
    # simple line
    if "id" not in obj:
        return None, "id", "is required (or use the batch-file shape with custom_id)"
    cid, err = _check_id(obj.get("id"), "id")
    if err:
        return None, "id", err
    has_p, has_m = "prompt" in obj, "messages" in obj
    if has_p == has_m:
        return cid, "prompt", "give exactly one of prompt or messages"
    if has_p:
        p = obj["prompt"]
        if not isinstance(p, str):
            return cid, "prompt", f"must be a string, got {_type_name(p)}"
        if not p.strip():
            return cid, "prompt", "must not be empty"
    else:
        bad = _check_messages(obj["messages"], "messages")
        if bad:
            return cid, bad[0], bad[1]
    if "system" in obj and not isinstance(obj["system"], str):
        return cid, "system", "must be a string"
    if "params" in obj and not isinstance(obj["params"], dict):
        return cid, "params", "must be an object"
    return cid, None, None


# --------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------

def _read_lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Physical lines as bytes (None for a line over :data:`MAX_LINE_BYTES`, which is skipped)."""
    n = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:  # drain the rest of the oversized line in bounded chunks
                more = f.readline(1 << 20)
                if not more or more.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, raw


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[JobItem | InvalidLine]:
    """Validate and yield each line of a JSONL job file."""
    with open(path, "rb") as f:
        for n, raw in _read_lines(f):
            if raw is None:
                yield InvalidLine(n, None, f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
                continue
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield InvalidLine(n, None, f"not valid UTF-8 (byte {exc.start + 1})")
                continue
            text = text.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield InvalidLine(n, None, f"malformed JSON: {exc.msg} (column {exc.colno})")
                continue
            except RecursionError:
                yield InvalidLine(n, None, "malformed JSON: nested too deeply")
                continue
            try:
                cid, field, err = validate_record(obj)
            except RecursionError:
                cid, field, err = None, None, "nested too deeply"
            if err is None and "\\u" in text and _has_lone_surrogate(obj):
                field, err = None, "contains an invalid \\u escape (lone surrogate)"
            if err is not None:
                yield InvalidLine(n, field, err, cid)
            else:
                yield JobItem(cid, n, text)  # type: ignore[arg-type]


class PromptTemplate:
    """A ``{column}`` template. ``{{`` and ``}}`` are literal braces; nothing else is interpreted.

    Deliberately not ``str.format``: no attribute or index access on values, and every
    placeholder is checked against the columns before the first row is read.
    """

    _TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

    def __init__(self, template: str) -> None:
        self.template = template
        self.parts: list[tuple[bool, str]] = []  # (is_column, text)
        pos = 0
        for m in self._TOKEN.finditer(template):
            if m.start() > pos:
                self.parts.append((False, template[pos:m.start()]))
            tok = m.group(0)
            if tok in ("{{", "}}"):
                self.parts.append((False, tok[0]))
            elif tok in ("{", "}"):
                raise UserInputError(f"unmatched {tok!r} at position {m.start() + 1} (write {tok * 2} for a literal)",
                                     field="--prompt-template")
            else:
                name = (m.group(1) or "").strip()
                if not name:
                    raise UserInputError("empty placeholder {}", field="--prompt-template")
                self.parts.append((True, name))
            pos = m.end()
        if pos < len(template):
            self.parts.append((False, template[pos:]))

    @property
    def columns(self) -> list[str]:
        return [t for is_col, t in self.parts if is_col]

    def check_columns(self, available: list[str], file: str) -> None:
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise UserInputError(f"placeholder {{{missing[0]}}} is not a column (columns: {', '.join(available)[:300]})",
                                 file=file, field="--prompt-template")

    def render(self, row: dict[str, Any]) -> str:
        out = []
        for is_col, t in self.parts:
            if is_col:
                v = row.get(t)
                out.append("" if v is None else str(v))
            else:
                out.append(t)
        return "".join(out)


def _row_item(row: dict[str, Any], n: int, template: PromptTemplate | None, id_col: str | None,
              row_no: int) -> JobItem | InvalidLine:
    """Turn one tabular row into a simple-line record."""
    if id_col is not None:
        cid, err = _check_id(row.get(id_col), id_col)
        if isinstance(row.get(id_col), (float,)) and err:
            cid, err = _check_id(str(row.get(id_col)), id_col)
        if err:
            return InvalidLine(n, id_col, err)
    else:
        cid = f"row-{row_no}"
    if template is not None:
        prompt = template.render(row)
    else:
        p = row.get("prompt")
        prompt = "" if p is None else str(p)
    if not prompt.strip():
        return InvalidLine(n, "prompt", "the prompt is empty", cid)
    if len(prompt.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        return InvalidLine(n, "prompt", f"the prompt is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB", cid)
    rec = {"id": cid, "prompt": prompt}
    text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return InvalidLine(n, "prompt", "contains characters that are not valid UTF-8", cid)
    return JobItem(cid, n, text)  # type: ignore[arg-type]


def _pick_id_col(columns: list[str]) -> str | None:
    for c in ("custom_id", "id"):
        if c in columns:
            return c
    return None


def _utf8_lines(f: BinaryIO, counter: list[int]) -> Iterator[str]:
    """Decode a CSV file line by line so a bad byte is reported with its line number."""
    for n, raw in _read_lines(f):
        counter[0] = n
        if raw is None:
            raise _Fatal(n, None, f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Fatal(n, None, f"not valid UTF-8 (byte {exc.start + 1}); save the CSV as UTF-8") from None


def iter_csv(path: str | os.PathLike[str], template: PromptTemplate | None) -> Iterator[JobItem | InvalidLine]:
    """Validate and yield each CSV row (``.tsv`` uses tabs). Line numbers are physical lines."""
    file = str(path)
    delim = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    csv.field_size_limit(MAX_LINE_BYTES)
    counter = [0]
    with open(path, "rb") as f:
        reader = csv.reader(_utf8_lines(f, counter), delimiter=delim)
        try:
            try:
                header = next(reader)
            except StopIteration:
                return
            header = [h.strip() for h in header]
            if template is not None:
                template.check_columns(header, file)
            elif "prompt" not in header:
                raise UserInputError("the CSV has no 'prompt' column; pass --prompt-template '...{column}...'",
                                     file=file, line=1, field="--prompt-template")
            id_col = _pick_id_col(header)
            row_no = 0
            for values in reader:
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue
                row_no += 1
                n = counter[0]
                if len(values) != len(header):
                    yield InvalidLine(n, None, f"has {len(values)} columns, the header has {len(header)}")
                    continue
                yield _row_item(dict(zip(header, values)), n, template, id_col, row_no)
        except _Fatal as exc:
            yield InvalidLine(exc.line, exc.field, exc.message)
        except csv.Error as exc:
            yield InvalidLine(counter[0], None, f"malformed CSV: {exc}")


def iter_parquet(path: str | os.PathLike[str], template: PromptTemplate | None) -> Iterator[JobItem | InvalidLine]:
    """Validate and yield each Parquet row, read in record batches. ``line`` is the 1-based row."""
    file = str(path)
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ModuleNotFoundError:
        raise UserInputError("reading Parquet needs pyarrow: pip install 'flextier[parquet]'",
                             file=file) from None
    try:
        pf = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise UserInputError(f"cannot read Parquet file: {str(exc)[:200]}", file=file) from None
    columns = list(pf.schema_arrow.names)
    if template is not None:
        template.check_columns(columns, file)
    elif "prompt" not in columns:
        raise UserInputError("the Parquet file has no 'prompt' column; pass --prompt-template '...{column}...'",
                             file=file, field="--prompt-template")
    id_col = _pick_id_col(columns)
    wanted = sorted(set((template.columns if template else ["prompt"]) + ([id_col] if id_col else [])))
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=2048, columns=wanted):
            for row in batch.to_pylist():
                n += 1
                yield _row_item(row, n, template, id_col, n)
    except Exception as exc:  # corrupt row groups
        yield InvalidLine(n + 1, None, f"cannot read Parquet row group: {str(exc)[:200]}")


def iter_input(path: str | os.PathLike[str], *, prompt_template: str | None = None,
               fmt: str | None = None) -> Iterator[JobItem | InvalidLine]:
    """Validate and yield every record of a job file, streaming, in input order.

    Raises :class:`UserInputError` for problems with the file as a whole (missing,
    unreadable, a template that names no column); per-record problems come back as
    :class:`InvalidLine` so they can be collected and reported together.
    """
    file = str(path)
    p = Path(path)
    if not p.exists():
        raise UserInputError("job file not found", file=file)
    if p.is_dir():
        raise UserInputError("is a directory, not a job file", file=file)
    fmt = fmt or detect_format(path)
    template = PromptTemplate(prompt_template) if prompt_template else None
    try:
        if fmt == "jsonl":
            if template is not None:
                raise UserInputError("--prompt-template applies to CSV and Parquet input only", field="--prompt-template")
            yield from iter_jsonl(path)
        elif fmt == "csv":
            yield from iter_csv(path, template)
        elif fmt == "parquet":
            yield from iter_parquet(path, template)
        else:
            raise UserInputError(f"unknown input format {fmt!r}", file=file)
    except PermissionError:
        raise UserInputError("permission denied", file=file) from None
    except IsADirectoryError:
        raise UserInputError("is a directory, not a job file", file=file) from None


# --------------------------------------------------------------------------------------
# items from Python (run_job)
# --------------------------------------------------------------------------------------

def item_from_object(obj: Any, index: int) -> JobItem | InvalidLine:
    """Accept what a Python caller passes to ``run_job``: a string prompt or a line-shaped dict.

    A bare string becomes ``{"id": "<index>", "prompt": s}``; a dict without an id gets
    its index as id. ``line`` is the 1-based position in the iterable.
    """
    n = index + 1
    if isinstance(obj, str):
        obj = {"id": str(index), "prompt": obj}
    elif isinstance(obj, dict) and "id" not in obj and "custom_id" not in obj:
        obj = {"id": str(index), **obj}
    try:
        cid, field, err = validate_record(obj)
    except RecursionError:
        cid, field, err = None, None, "nested too deeply"
    if err is not None:
        return InvalidLine(n, field, err, cid)
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        return InvalidLine(n, None, f"cannot be serialised as JSON: {exc.__class__.__name__}", cid)
    return JobItem(cid, n, text)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# stored request -> CallRequest
# --------------------------------------------------------------------------------------

#: Job-level generation parameters that simple lines inherit.
JOB_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed", "reasoning_effort")


#: Fields of a request that flextier itself decides: the model (``--model``), the tier (``--tier``)
#: and streaming (results are whole responses). A body's own values are dropped, and
#: :class:`BodyNotes` says so once per job.
RESERVED_FIELDS = ("model", "service_tier", "stream", "stream_options")
_MAX_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
#: Job parameters a native OpenAI body takes, per endpoint, and the key each goes under there.
_NATIVE_JOB_KEYS = {
    "chat": {"max_tokens": "max_completion_tokens", "temperature": "temperature", "top_p": "top_p",
             "stop": "stop", "seed": "seed", "reasoning_effort": "reasoning_effort"},
    "responses": {"max_tokens": "max_output_tokens", "temperature": "temperature", "top_p": "top_p"},
}


def apply_job_params(body: dict[str, Any], endpoint: str, job_params: dict[str, Any] | None) -> dict[str, Any]:
    """``body`` (a native OpenAI body) with the job's parameters where the body has none of its own.

    Why here: a job flag must apply in every lane (flex, standard, batch) and to every input
    shape. ``--max-tokens`` was only injected into batch-format lines when ``--max-cost`` was
    also given, so 200 lines with ``--max-tokens 20`` came back with a median of 297 output
    tokens. The line's own value wins, as a simple line's ``params`` win over the job's.
    """
    for k, v in (job_params or {}).items():
        key = _NATIVE_JOB_KEYS.get(endpoint, {}).get(k)
        if key is None or v is None:
            continue
        if k == "max_tokens":
            if not any(body.get(m) is not None for m in _MAX_KEYS):
                body[key] = v
        else:
            body.setdefault(key, v)
    return body


def inject_max(req: "CallRequest", n: int) -> None:
    """Give a request the job's ``--max-tokens`` (``n``) unless it sets its own, so its cost has a bound.

    A native body gets the field its endpoint reads (``max_output_tokens`` for Responses,
    ``max_completion_tokens`` for Chat Completions). Here, beside :func:`request_to_call`, because
    the online lanes and the batch lane both apply it to the requests built there.
    """
    if req.native is None:
        req.params.setdefault("max_tokens", n)
    elif req.endpoint == "responses":
        req.native.setdefault("max_output_tokens", n)
    else:
        req.native.setdefault("max_completion_tokens", n)


def request_to_call(text: str, entry: Any, job_params: dict[str, Any] | None = None) -> Any:
    """Build the :class:`~flextier._types.CallRequest` for one stored item.

    Batch lines are sent natively (their ``body`` as-is, the job's model replacing
    ``body.model``, the job's parameters filling what the body leaves unset); simple lines
    become chat messages plus the job's parameters, with per-line ``params`` taking
    precedence. The :data:`RESERVED_FIELDS` of either are flextier's to set.
    """
    from .._types import CallRequest

    obj = json.loads(text)
    if "body" in obj:
        body = dict(obj["body"])
        endpoint = BATCH_URLS[obj["url"]]
        for k in RESERVED_FIELDS:
            body.pop(k, None)
        if getattr(entry, "provider", "openai") != "openai":
            return _portable_call(body, endpoint, entry, str(obj["custom_id"]), job_params)
        body = apply_job_params({"model": entry.model_id, **body}, endpoint, job_params)
        return CallRequest(model=entry, native=body, endpoint=endpoint, custom_id=str(obj["custom_id"]))
    if "messages" in obj:
        messages = list(obj["messages"])
    else:
        messages = [{"role": "user", "content": obj["prompt"]}]
    if obj.get("system"):
        messages.insert(0, {"role": "system", "content": obj["system"]})
    params = {k: v for k, v in (job_params or {}).items() if v is not None}
    params.update(obj.get("params") or {})
    for k in RESERVED_FIELDS:
        params.pop(k, None)
    return CallRequest(model=entry, messages=messages, params=params, endpoint="chat", custom_id=str(obj["id"]))


_PORTABLE_PARAMS = {"max_completion_tokens": "max_tokens", "max_tokens": "max_tokens", "max_output_tokens": "max_tokens",
                    "temperature": "temperature", "top_p": "top_p", "stop": "stop", "seed": "seed"}


def _portable_call(body: dict[str, Any], endpoint: str, entry: Any, custom_id: str,
                   job_params: dict[str, Any] | None = None) -> Any:
    """An OpenAI batch line sent to another provider: its messages and common parameters.

    The body is OpenAI's wire format, which Gemini, Bedrock and Anthropic do not read, so
    it is turned into provider-neutral messages + params that every adapter translates.
    Fields with no portable meaning (tools, response_format, logprobs...) are dropped.
    """
    from .._types import CallRequest

    if endpoint == "chat":
        messages = list(body.get("messages") or [])
    else:
        inp = body.get("input")
        if isinstance(inp, str):
            messages = [{"role": "user", "content": inp}]
        else:
            messages = [{"role": m.get("role", "user"), "content": m.get("content", "")}
                        for m in (inp or []) if isinstance(m, dict) and "content" in m]
        if isinstance(body.get("instructions"), str):
            messages.insert(0, {"role": "system", "content": body["instructions"]})
    params = {_PORTABLE_PARAMS[k]: v for k, v in body.items() if k in _PORTABLE_PARAMS and v is not None}
    for k, v in (job_params or {}).items():  # the job's flags fill what the line leaves unset
        if k in _PORTABLE_PARAMS.values() and v is not None:
            params.setdefault(k, v)
    return CallRequest(model=entry, messages=messages, params=params, endpoint="chat", custom_id=custom_id)


# --------------------------------------------------------------------------------------
# what flextier changes in the bodies it is given: said once per job, refused when contradictory
# --------------------------------------------------------------------------------------

#: ``service_tier`` spellings -> the tier they ask for (``auto``: the project default, no opinion).
_BODY_TIERS = {"auto": None, "default": "standard", "standard": "standard", "flex": "flex", "priority": "priority",
               "scale": "priority"}
#: Tiers each ``--tier`` may serve online; a body asking for another one contradicts it.
_TIER_ALLOWS = {"auto": {"flex", "standard"}, "flex": {"flex"}, "standard": {"standard"}, "batch": set()}


class BodyNotes:
    """Counts, during the import pass, the request fields flextier replaces, and refuses the
    ``service_tier`` values that contradict ``--tier``.

    Why: a body's ``stream: true``, its own ``model`` and its ``service_tier`` are replaced by
    flextier (whole responses; ``--model``; the tier the planner picks). Doing that silently
    surprised users (a batch file of ``gpt-4o`` lines ran on ``--model``'s model); refusing
    every such line would make real OpenAI batch files unusable, since they all name a model.
    So each is counted and said once per job (:meth:`warnings`), and only a tier the job can
    never give (``flex`` under ``--tier standard``, ``priority`` anywhere) is an invalid record:
    ``file:line: body.service_tier: ...``, exit 2, nothing sent (``--skip-invalid`` skips it).

    Use: ``items = notes.watch(iter_input(path))`` and hand ``items`` to the import.
    """

    def __init__(self, *, tier_mode: str, entry: Any) -> None:
        self.tier_mode = tier_mode
        self.entry = entry
        self.stream = 0
        self.model = 0
        self.service_tier = 0
        self.models: list[str] = []      # the first few other model names seen
        self._same: dict[str, bool] = {}

    def _same_model(self, name: str) -> bool:
        hit = self._same.get(name)
        if hit is None:
            e = self.entry
            hit = name in (e.model_id, e.name)
            if not hit:
                from ..catalog import default_catalog

                found = default_catalog().find_wire(e.provider, name)
                hit = found is not None and found.name == e.name
            if len(self._same) < 1024:
                self._same[name] = hit
        return hit

    def check(self, item: JobItem) -> JobItem | InvalidLine:
        """``item``, counted; or an :class:`InvalidLine` when its tier contradicts ``--tier``."""
        if '"stream' not in item.request and '"model"' not in item.request and '"service_tier"' not in item.request:
            return item  # nothing to look at (most simple lines): skip the parse
        obj = json.loads(item.request)
        where, fields = ("body", obj.get("body")) if "body" in obj else ("params", obj.get("params"))
        if not isinstance(fields, dict):
            return item
        if fields.get("stream") or "stream_options" in fields:
            self.stream += 1
        m = fields.get("model")
        if m is not None and not (isinstance(m, str) and self._same_model(m)):
            self.model += 1
            if len(self.models) < 3 and str(m)[:60] not in self.models:
                self.models.append(str(m)[:60])
        if "service_tier" in fields:
            v = fields["service_tier"]
            if v is not None and (not isinstance(v, str) or v.lower() not in _BODY_TIERS):
                return InvalidLine(item.line, f"{where}.service_tier",
                                   f"unknown tier {str(v)[:30]!r} (OpenAI's are auto, default, flex, priority)",
                                   item.custom_id)
            want = _BODY_TIERS.get(v.lower()) if isinstance(v, str) else None
            if want is not None and want not in _TIER_ALLOWS.get(self.tier_mode, {"flex", "standard"}):
                return InvalidLine(item.line, f"{where}.service_tier",
                                   f"{v!r} contradicts --tier {self.tier_mode} (flextier sets each request's tier "
                                   f"itself); drop the field or change --tier", item.custom_id)
            self.service_tier += 1
        return item

    def watch(self, items: Iterator[JobItem | InvalidLine]) -> Iterator[JobItem | InvalidLine]:
        """``items`` passed through :meth:`check` (invalid lines unchanged)."""
        for it in items:
            yield self.check(it) if isinstance(it, JobItem) else it

    def warnings(self) -> list[str]:
        """One line per kind of replaced field, with its count (empty when nothing was replaced)."""
        out = []
        if self.model:
            names = ", ".join(self.models) + (", ..." if self.model > len(self.models) else "")
            out.append(f"{self.model} lines name another model ({names}); --model {self.entry.name} replaces it "
                       f"(and prices them)")
        if self.stream:
            out.append(f"{self.stream} lines ask for streaming; they are sent unstreamed and each result is the "
                       f"whole response")
        if self.service_tier:
            out.append(f"{self.service_tier} lines set service_tier; flextier sets each request's tier itself "
                       f"(--tier {self.tier_mode})")
        return out


__all__ = ["BodyNotes", "apply_job_params", "RESERVED_FIELDS", "JobItem", "InvalidLine", "InvalidInput", "PromptTemplate", "inject_max", "iter_input", "iter_jsonl", "iter_csv",
           "iter_parquet", "item_from_object", "request_to_call", "detect_format", "file_sha256",
           "validate_record", "MAX_LINE_BYTES", "MAX_REPORTED_ERRORS"]
