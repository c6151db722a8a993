"""Running the emulator: in-process on a background thread, or in the foreground.

:func:`serve` is the context manager tests and ``flextier run --emulate`` use: it
binds a socket (a free port with ``port=0``) before starting uvicorn, so the URL
is known at once, and it shuts the server down cleanly on exit. Control calls
from the caller's thread (stats, profile switches) are marshalled onto the
server's event loop so the capacity state is only ever touched by one thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import threading
import time
from typing import Any, Iterator

import uvicorn

from .app import apply_profile, build_app, stats
from .clock import ScaledClock
from .engine import Engine
from .edges import EdgeGuard, Limits, guarded_protocol
from .profiles import build_knobs, load_profile_file

__all__ = ["Emulator", "serve"]


class _DropIncomplete(logging.Filter):
    """The reset fault ends responses on purpose; don't log that as a server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_DropIncomplete())


def _http_impl() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def _protocol(limits: Limits) -> type:
    """uvicorn's HTTP protocol class with the emulator's head/body timeouts and head limits."""
    if _http_impl() == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base   # type: ignore[assignment]
    return guarded_protocol(base, limits)


# The plain asyncio loop, not uvloop: they serve the same requests per CPU second here,
# but uvloop's libuv accepts one connection per loop iteration, so when 256 clients
# connect while the loop is saturated, the last ones wait seconds to be accepted (a
# p99 of 2-12 s in the throughput benchmark); asyncio accepts the whole backlog at once.
_LOOP = "asyncio"


class Emulator:
    """An emulator instance: engine + uvicorn server on a background thread."""

    def __init__(self, profile: str = "calm", seed: int = 0, time_scale: float = 1.0,
                 start: Any = "2026-11-24T15:00", host: str = "127.0.0.1", port: int = 0,
                 profile_file: str | None = None, limits: Limits | None = None, **knobs: Any) -> None:
        """``limits``: the HTTP edges (head/body timeouts, head and body sizes; :class:`~.http.Limits`)."""
        self.limits = limits or Limits()
        file_knobs: dict[str, Any] = {}
        if profile_file is not None:
            base, file_knobs = load_profile_file(profile_file)
            if base is not None and profile == "calm":
                profile = base
        sticky = {**file_knobs, **knobs}
        self.clock = ScaledClock(time_scale, start)
        self.engine = Engine(build_knobs(profile, sticky), self.clock, seed=seed, profile=profile)
        self.engine.sticky_knobs = sticky       # type: ignore[attr-defined]
        self.host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._offline: Any = None

    # -- URLs ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gemini_base_url(self) -> str:
        return self.url

    @property
    def bedrock_endpoint_url(self) -> str:
        return self.url

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def deepseek_base_url(self) -> str:
        """DeepSeek's OpenAI-compatible API (:mod:`.deepseek_api`)."""
        return self.url + "/deepseek"

    @property
    def s3_endpoint_url(self) -> str:
        """The emulator's in-memory S3 (path-style; Bedrock batch input and output, :mod:`.s3`)."""
        from .s3 import PREFIX

        return self.url + PREFIX

    @property
    def s3(self) -> Any:
        """The :class:`~.s3.S3Store` behind :attr:`s3_endpoint_url` (e.g. ``emu.s3.create_bucket("b")``)."""
        from .s3 import s3_store

        return s3_store(self.engine)

    def base_urls(self) -> dict[str, str]:
        return {"openai": self.openai_base_url, "gemini": self.gemini_base_url,
                "bedrock": self.bedrock_endpoint_url, "anthropic": self.anthropic_base_url,
                "deepseek": self.deepseek_base_url}

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Emulator":
        from .._loopback import offline

        # while it runs, every client flextier builds in this process must point at loopback
        self._offline = offline("flextier.emulator.serve")
        self._offline.__enter__()
        try:
            return self._start()
        except BaseException:
            self._offline.__exit__(None, None, None)
            self._offline = None
            raise

    def _start(self) -> "Emulator":
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets (else +40 ms per response)
        sock = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self._sock = sock
        self._port = sock.getsockname()[1]
        app = EdgeGuard(build_app(self.engine), self.limits, bind_host=self.host)
        config = uvicorn.Config(app, log_config=None, log_level="warning",
                                access_log=False, limit_concurrency=None, backlog=2048, lifespan="on",
                                timeout_keep_alive=300, timeout_graceful_shutdown=0.5, http=_protocol(self.limits),
                                loop=_LOOP, proxy_headers=False, server_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"flextier-emulator-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("emulator server failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        if self._offline is not None:
            self._offline.__exit__(None, None, None)
            self._offline = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the server stops (foreground use)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    # -- control ---------------------------------------------------------------------------------------
    def _on_loop(self, fn: Any, *args: Any) -> Any:
        loop = getattr(self.engine, "loop", None)
        if loop is None or not loop.is_running():
            return fn(*args)

        async def call() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def ledger(self) -> list[dict[str, Any]]:
        return self.engine.ledger.rows()

    def stats(self) -> dict[str, Any]:
        return self._on_loop(stats, self.engine)

    def set_profile(self, profile: str, **knobs: Any) -> None:
        self._on_loop(apply_profile, self.engine, profile, knobs)

    def set_knobs(self, **knobs: Any) -> None:
        self._on_loop(apply_profile, self.engine, None, knobs)

    @property
    def knobs(self) -> Any:
        return self.engine.knobs

    def availability_forecast(self) -> Any:
        """The flex headroom this profile's daily curve and burst law promise at emulated time ``t``
        (:func:`~flextier.emulator.capacity.expected_headroom`; the seeded bursts themselves left
        out): the time-of-day forecast a client may know, for the planner's availability-weighted
        line (docs/deadline-policy.md §3 rule 5)."""
        from .capacity import expected_headroom

        engine = self.engine  # read the knobs at each call: a profile switch changes them

        def headroom(t: float) -> float:
            return expected_headroom(t, engine.knobs)

        return headroom

    @property
    def profile(self) -> str:
        return self.engine.profile


@contextlib.contextmanager
def serve(profile: str = "calm", seed: int = 0, time_scale: float = 1.0, start: Any = "2026-11-24T15:00",
          host: str = "127.0.0.1", port: int = 0, profile_file: str | None = None,
          limits: Limits | None = None, **knobs: Any) -> Iterator[Emulator]:
    """Run an emulator for the duration of the ``with`` block."""
    emu = Emulator(profile=profile, seed=seed, time_scale=time_scale, start=start, host=host, port=port,
                   profile_file=profile_file, limits=limits, **knobs)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
