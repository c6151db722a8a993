"""SIGTERM and Ctrl-C stop a job cleanly: drain what is in flight, record it, exit "stopped".

Why: without a handler SIGTERM killed the process and left the job "running"
with 264 requests in flight, and Ctrl-C cancelled 200 in-flight requests, which the provider
billed and a resume then sent (and billed) again. The requests in flight are paid for
already; waiting a few seconds for their answers is cheaper than buying them twice.

* The first SIGTERM or SIGINT asks the runner to stop (:meth:`Runner.request_stop`): no new
  item is claimed or sent; the requests in flight get ``drain_timeout`` wall seconds to
  finish and be recorded; then the runner stops, any still out are recorded as possibly
  billed, and the job is left "stopped" and resumable.
* A second signal stops at once (:meth:`Runner.stop_now`).
* The exit code is the shell's: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).

The handlers live only while the job's event loop runs (``loop.add_signal_handler``); they
are removed afterwards, so the rest of the CLI keeps Python's defaults.
"""
from __future__ import annotations

import asyncio
import signal
from typing import Any

DEFAULT_DRAIN_TIMEOUT = 30.0
"""Wall seconds a stop waits for in-flight requests (``--drain-timeout``)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Signal handlers that turn SIGINT/SIGTERM into a graceful stop of one runner."""

    def __init__(self, runner: Any, *, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
                 notify: Any = None) -> None:
        self.runner = runner
        self.drain_timeout = drain_timeout
        self.notify = notify              # callable(str): one line for the user (stderr)
        self.signum: int | None = None    # the first signal received
        self.forced = False               # a second signal: stopped without draining
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[int] = []

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """128 + signal number, as a shell reports a process ended by that signal."""
        return 128 + int(self.signum or signal.SIGINT)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Install on ``loop``; silently nothing where the loop cannot (not the main thread, Windows)."""
        self._loop = loop
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, int(sig))
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._installed.append(int(sig))

    def uninstall(self) -> None:
        if self._loop is None:
            return
        for sig in self._installed:
            try:
                self._loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):  # pragma: no cover - loop already closed
                pass
        self._installed.clear()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            n = self.runner.in_flight()
            self.runner.request_stop(f"stopped by {name}", drain_timeout=self.drain_timeout)
            self._say(f"flextier: {name}: stopping; waiting up to {self.drain_timeout:g} s for {n} requests in "
                      f"flight (they are paid for already). Press Ctrl-C again to stop at once.")
        elif not self.forced:
            self.forced = True
            self.runner.stop_now()
            self._say(f"flextier: {name} again: stopping now; requests still in flight are marked possibly billed")

    def _say(self, line: str) -> None:
        if self.notify is not None:
            try:
                self.notify(line)
            except Exception:  # pragma: no cover - a closed stderr must not break the stop
                pass


__all__ = ["GracefulStop", "DEFAULT_DRAIN_TIMEOUT", "STOP_SIGNALS"]
