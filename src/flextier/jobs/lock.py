"""One owner per job: an OS file lock beside the store, held for as long as a process runs the job.

Why an OS lock (``flock``) and not a row in the store or a PID file: the kernel drops it
when its process dies, however it dies (``kill -9``, a crash, a power cut of the process),
so a crashed owner never blocks a resume and there is no stale-lock guessing. Two runners
of one job would both claim, send and bill the same items (a reliability review measured 141-183 items billed
twice and results lost), so the second one is refused before it touches the store.

The lock file (``<store>.lock``) holds the owner's PID for the refusal message. It is never
truncated before the lock is held and never deleted (deleting a lock file that another
process has open is how two processes end up holding "the" lock).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import JobBusy, UserInputError  # JobBusy re-exported from its home

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path_for(store: str | os.PathLike[str]) -> Path:
    """``.flextier/NAME.db`` -> ``.flextier/NAME.db.lock``."""
    p = Path(store)
    return p.with_name(p.name + ".lock")


def try_flock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on ``fd``; False when another process holds one."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:  # a filesystem without flock (some network mounts): do not block the job
            import errno

            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            return True
    try:  # pragma: no cover - Windows: lock the first byte
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:  # pragma: no cover
        return False


class JobLock:
    """The exclusive lock of one job's store. ``acquire`` raises :class:`JobBusy`; ``release`` is idempotent."""

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.store = Path(store)
        self.path = lock_path_for(store)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "JobLock":
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the owner's PID stays
        except OSError as exc:
            import errno

            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise  # disk full: the caller pauses the job in one line
            raise UserInputError(f"cannot create the job's lock file ({exc.strerror or exc})",
                                 file=str(self.path)) from None
        if not try_flock(fd):
            os.close(fd)
            pid = owner_pid(self.path)
            who = f"process {pid}" if pid else "another process"
            raise JobBusy(f"this job is already running in {who}; wait for it to finish, or stop it "
                          f"(kill {pid or 'PID'}) and resume", file=str(self.store))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # closing the descriptor drops the flock
            except OSError:  # pragma: no cover
                pass

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_owner(store: str | os.PathLike[str]) -> int | None:
    """The PID of the live process that owns the job (0 when unknown), or None when no process does.

    A probe for ``flextier status``: it takes and drops the lock without writing to the file,
    so it never stands in for the owner's PID.
    """
    path = lock_path_for(store)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if try_flock(fd):
            return None
        return owner_pid(path) or 0
    finally:
        os.close(fd)


def owner_pid(path: str | os.PathLike[str]) -> int | None:
    """The PID written in a lock file (the owner may be between locking and writing it: retry briefly)."""
    for _ in range(20):
        try:
            txt = Path(path).read_text().strip()
        except OSError:
            return None
        if txt.isdigit():
            return int(txt)
        time.sleep(0.01)
    return None


__all__ = ["JobLock", "JobBusy", "lock_path_for", "live_owner", "owner_pid", "try_flock"]
