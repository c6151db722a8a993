"""The results JSONL file: checked before anything is sent, owned by one job, verified by content.

The file is derived from the store (see :mod:`flextier.jobs.store`): the store records how
far it has been written (``out_offset``) and which results that prefix holds. Before, a
resume trusted the file's *size*: overwritten with same-size junk, a rerun said "done"
with 1,297 results missing, and two jobs given the same ``--out`` truncated each other's
results. So:

* :func:`check_out_path` refuses a directory or a read-only file with one line, exit 2,
  before the store is even opened.
* :meth:`OutputSink.claim` takes an exclusive ``flock`` on the file (two running jobs
  cannot write one file), and the store records the file's identity (device, inode) when
  the job creates or adopts it: a file another job wrote is refused, never truncated.
* :meth:`OutputSink.prepare` compares the recorded prefix with the store by content (a
  multiset digest of the lines: every result present exactly once, nothing else, no torn
  line) and rewrites the file from the store when they differ.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import UserInputError
from .lock import JobBusy, try_flock

log = logging.getLogger(__name__)
_MASK = (1 << 128) - 1
_MAX_LINE = 256 << 20


def check_out_path(path: str | os.PathLike[str], field: str = "--out") -> None:
    """Refuse a results path that cannot be written (a directory, a read-only file, a read-only place)."""
    p = Path(path)
    if p.is_dir():
        raise UserInputError("is a directory; give a file name for the results (e.g. DIR/results.jsonl)",
                             file=str(path), field=field)
    if p.exists():
        st = p.stat()
        if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
            raise UserInputError(f"is read-only (mode {stat.S_IMODE(st.st_mode):04o}); make it writable or give "
                                 f"another --out", file=str(path), field=field)
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise UserInputError(f"cannot be written ({exc.strerror or exc})", file=str(path), field=field) from None
        return
    parent = p.parent if str(p.parent) else Path(".")
    anc = parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise UserInputError(f"{anc} is not a directory", file=str(path), field=field)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot create the results file: {anc} is not writable", file=str(path), field=field)


def _file_id(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def line_digest(lines: Iterable[bytes]) -> tuple[int, int]:
    """(count, sum of 128-bit BLAKE2b hashes) of lines: equal for equal multisets, order-free."""
    n, total = 0, 0
    for ln in lines:
        total = (total + int.from_bytes(hashlib.blake2b(ln, digest_size=16).digest(), "big")) & _MASK
        n += 1
    return n, total


class OutputSink:
    """The results JSONL file, appended as results are committed (one owner, content-checked)."""

    def __init__(self, path: str | os.PathLike[str], *, field: str = "--out") -> None:
        self.path = Path(path)
        self.field = field  # how errors name the setting: the CLI's --out, the Python API's out=
        self._fd: int | None = None
        self.offset = 0
        self.regular = True
        self.rebuilt: str | None = None   # why the file was rewritten from the store, if it was
        self.announce: Callable[[str], None] = log.warning  # how a rebuild is told (the CLI prints one line)
        self._created = False             # claim() made the file: a refusal before prepare() removes it
        self._prepared = False

    # -- ownership ---------------------------------------------------------------------
    def claim(self) -> None:
        """Open (creating, never truncating) and lock the file; refuse one another process writes."""
        if self._fd is not None:
            return
        check_out_path(self.path, self.field)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserInputError(f"cannot be written ({exc.strerror or exc})", file=str(self.path),
                                 field=self.field) from None
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if self.regular and not try_flock(fd):
            os.close(fd)
            raise JobBusy("another running job is writing this results file; give this job its own --out",
                          file=str(self.path), field=self.field)
        self._fd = fd
        self._created = not existed

    def prepare(self, recorded_offset: int, store: Any = None, ordered: bool = False) -> bool:
        """Make the file hold exactly the results the store says were written. False: rewrite all.

        With a ``store``: a non-empty file this job did not create is refused (another job's
        results); the recorded prefix is checked by content and cut to nothing when it does
        not match. Whatever lies past the recorded offset (a torn line) is cut either way.
        """
        self.claim()
        assert self._fd is not None
        self._prepared = True
        if not self.regular:  # /dev/null and friends: nothing to verify or cut
            self.offset = recorded_offset
            return True
        st = os.fstat(self._fd)
        size = st.st_size
        intact = size >= recorded_offset
        if store is not None:
            job = store.job() or {}
            mine = job.get("out_file")
            if size > 0 and mine != _file_id(st) and not (mine is None and recorded_offset > 0):
                self.close()
                raise UserInputError(
                    f"already holds {size} bytes this job did not write (another job's results, or this job's "
                    f"from before its store was deleted); move the file away, or give another --out",
                    file=str(self.path), field=self.field)
            if mine != _file_id(st):
                store.update_job(out_file=_file_id(st))
            if intact and recorded_offset > 0:
                intact = self._matches_store(recorded_offset, store, ordered)
            elif not intact:
                self.rebuilt = (f"{self.path} is shorter than the job's store recorded ({size} of {recorded_offset} "
                                f"bytes); rewritten from the store")
                self.announce(self.rebuilt)
        self.offset = recorded_offset if intact else 0
        os.ftruncate(self._fd, self.offset)
        os.lseek(self._fd, self.offset, os.SEEK_SET)
        return intact

    def _matches_store(self, upto: int, store: Any, ordered: bool) -> bool:
        """The first ``upto`` bytes are whole lines, and they are the written results, each once."""
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        left = upto
        buf = b""
        lines: list[bytes] = []
        n_found, sum_found = 0, 0
        while left > 0:
            chunk = os.read(self._fd, min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
            buf += chunk
            *whole, buf = buf.split(b"\n")
            if len(buf) > _MAX_LINE:  # no result line is this long: junk, stop reading it
                break
            lines.extend(whole)
            if len(lines) >= 4096:
                n, s = line_digest(lines)
                n_found, sum_found = n_found + n, (sum_found + s) & _MASK
                lines.clear()
        torn = bool(buf) or left > 0
        n, s = line_digest(lines)
        n_found, sum_found = n_found + n, (sum_found + s) & _MASK
        n_want, sum_want = line_digest(r.encode("utf-8") for r in store.written_results(ordered))
        if not torn and (n_found, sum_found) == (n_want, sum_want):
            return True
        self.rebuilt = (f"{self.path} did not match the job's store ({n_want} results written, {n_found} lines "
                        f"found{', a torn line' if torn else ''}); rewritten from the store")
        self.announce(self.rebuilt)
        return False

    # -- writing -----------------------------------------------------------------------
    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._fd is None:
            raise RuntimeError("OutputSink.write before prepare()")
        data = memoryview(("\n".join(lines) + "\n").encode("utf-8"))
        done = 0
        try:
            while done < len(data):
                k = os.write(self._fd, data[done:])
                if k <= 0:  # pragma: no cover - a short write is what a full disk does
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += k
        except OSError as exc:
            # cut the torn tail so the file stays whole lines up to what the store will record
            try:
                if self.regular:
                    os.ftruncate(self._fd, self.offset)
                    os.lseek(self._fd, self.offset, os.SEEK_SET)
            except OSError:  # pragma: no cover
                pass
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        self.offset += len(data)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if self._created and not self._prepared and os.fstat(fd).st_size == 0:
                    os.unlink(self.path)  # made by claim() for a job that was then refused
            except OSError:  # pragma: no cover
                pass
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass


__all__ = ["OutputSink", "check_out_path", "line_digest"]
