"""Which job a command means: names from the input file's path and content, and finding a store by name.

Why not the file's stem (as before): ``jobs.txt`` found the store of ``jobs.jsonl`` and
printed its summary; ``bad.csv`` was refused because ``bad.jsonl`` had run. A job is the
pair (resolved input path, content): its default name is the readable stem plus a short
hash of both, ``jobs-3f2a9c1b``, so two different files never share a store and the same
file (same path, same bytes) always comes back to its own store and resumes. ``--job NAME``
names a job explicitly; a store of that name then refuses an input with other content.

``status``/``report``/``resume`` accept the printed name, a store path, the input file
itself, or the bare stem when only one job has it.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from .input import file_sha256

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
HASH_LEN = 8


def readable_stem(path: str | os.PathLike[str]) -> str:
    """The input file's stem reduced to safe characters (``my data.jsonl`` -> ``my-data``)."""
    stem = Path(path).stem or "job"
    return _SAFE.sub("-", stem).strip("-.") or "job"


def check_job_name(name: str, field: str = "--job") -> str:
    """An explicit job name must be usable as a file name on every OS."""
    if not _NAME.match(name) or name.endswith(".db"):
        raise UserInputError(f"{name!r} is not a job name: use letters, digits, '.', '_' and '-' (at most 128, "
                             f"starting with a letter or digit)", field=field)
    return name


@dataclass(frozen=True)
class InputIdentity:
    """The input as the job knows it: resolved path, content hash and the default job name."""

    path: str          # resolved, absolute
    sha256: str        # of the content
    name: str          # ``<stem>-<8 hex>``


def identify_input(path: str | os.PathLike[str]) -> InputIdentity:
    """Identity of an input file. A missing or unreadable file is one line, exit 2."""
    p = Path(path)
    if not p.exists():
        raise UserInputError("job file not found", file=str(path))
    if p.is_dir():
        raise UserInputError("is a directory, not a job file", file=str(path))
    resolved = str(p.resolve())
    try:
        content = file_sha256(resolved)
    except OSError as exc:
        raise UserInputError(f"cannot read the job file ({exc.strerror or exc})", file=str(path)) from None
    tag = hashlib.sha256(f"{resolved}\0{content}".encode("utf-8", "surrogateescape")).hexdigest()[:HASH_LEN]
    return InputIdentity(resolved, content, f"{readable_stem(p)}-{tag}")


def legacy_store(ident: InputIdentity, base: str | os.PathLike[str] | None = None) -> Path | None:
    """A store an older flextier named after the bare stem (``.flextier/jobs.db``) for this very input.

    Used only when it holds the same content from the same resolved path, so upgrading in the
    middle of a job resumes it instead of sending (and paying for) everything again.
    """
    p = stores_dir(base) / f"{readable_stem(ident.path)}.db"
    if not p.is_file():
        return None
    from .store import recorded_input

    row = recorded_input(p)
    if not row or row[1] != ident.sha256 or not row[0]:
        return None
    try:
        same = Path(row[0]).resolve() == Path(ident.path)
    except OSError:  # pragma: no cover
        return None
    return p if same else None


def earlier_jobs(ident: InputIdentity, base: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of jobs that ran from this same path with other content (the file changed since).

    A changed file is a new job; saying so keeps the old one from looking lost.
    """
    from .store import recorded_input

    d = stores_dir(base)
    stem = readable_stem(ident.path)
    pat = re.compile(re.escape(stem) + r"-[0-9a-f]{%d}\.db$" % HASH_LEN)
    out = []
    for p in sorted(d.glob(f"{stem}-*.db"), key=lambda p: p.stat().st_mtime, reverse=True):
        if not pat.match(p.name) or p.name == f"{ident.name}.db":
            continue
        row = recorded_input(p)  # None: not a readable store, skip it
        if row and row[0] == ident.path and row[1] != ident.sha256:
            out.append(p.stem)
    return out


def stores_dir(base: str | os.PathLike[str] | None = None) -> Path:
    return Path(base or ".") / ".flextier"


def find_store_by_name(job: str, base: str | os.PathLike[str] | None = None) -> Path:
    """The store a user means by ``job``: a path, a full name, an input file, or a unique stem.

    Raises :class:`UserInputError` (one line, exit 2) naming the candidates when the stem
    is ambiguous and saying how to start the job when nothing matches.
    """
    d = stores_dir(base)
    if job.endswith(".db") or os.sep in job or (os.altsep and os.altsep in job):
        p = Path(job)
        if p.is_file() and not job.endswith(".db"):  # an input file given by path
            return _store_of_input(job, d)
        if not p.exists():
            raise UserInputError(f"no job store at {p} (start the job with `flextier run FILE`)", field="JOB")
        return p
    exact = d / f"{job}.db"
    if exact.exists():
        return exact
    if Path(job).is_file():
        return _store_of_input(job, d)
    pat = re.compile(re.escape(job) + r"-[0-9a-f]{%d}\.db$" % HASH_LEN)
    found = sorted((p for p in d.glob(f"{job}-*.db") if pat.match(p.name)), key=lambda p: p.stat().st_mtime)
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name[:-3] for p in reversed(found))
        raise UserInputError(f"several jobs are named after {job!r}: {names} (newest first); give the full name",
                             field="JOB")
    raise UserInputError(f"no job {job!r} in {d} (start it with `flextier run FILE`; `ls {d}` lists the jobs)",
                         field="JOB")


def _store_of_input(path: str, d: Path) -> Path:
    ident = identify_input(path)
    p = d / f"{ident.name}.db"
    if not p.exists():
        raise UserInputError(f"no job has run from this file with its current content (expected {p})",
                             file=path)
    return p


__all__ = ["InputIdentity", "identify_input", "find_store_by_name", "legacy_store", "earlier_jobs", "check_job_name",
           "readable_stem", "stores_dir", "HASH_LEN"]
