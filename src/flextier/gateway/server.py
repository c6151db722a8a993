"""Running the gateway: in-process on a background thread (tests, bench) or in the foreground (CLI).

Why the socket is bound before uvicorn starts: the URL is known at once (``port=0`` picks a
free one), as for the emulator (:mod:`flextier.emulator.server`). Shutdown is graceful: uvicorn
stops accepting, waits up to ``drain_s`` for calls in flight (streams included), then the
ledger is flushed. A non-loopback ``host`` is refused unless the config defines keys: an open
gateway would spend the operator's credentials for anyone who can reach it.
"""
from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from typing import Any, Iterator

import uvicorn

from .._loopback import is_loopback_host
from ..errors import UserInputError
from ..policy.fallback import Policy
from .app import build_app
from .config import GatewayConfig
from .ledger import Ledger
from .service import Gateway

__all__ = ["GatewayServer", "serve", "check_bind", "DEFAULT_PORT", "default_ledger_path"]

DEFAULT_PORT = 8788
_KEY_QUERY = re.compile(r"([?&]key=)[^&\s]*")


class _RedactKeyQuery(logging.Filter):
    """Uvicorn's access log prints the path with its query; a gateway key may ride there as
    ``?key=`` (google-genai, the pages' first visit). Replace it before the line is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_KEY_QUERY.sub(r"\1REDACTED", a) if isinstance(a, str) else a for a in record.args)
        return True


def default_ledger_path() -> str:
    return ".flextier/gateway.db"


def check_bind(host: str, cfg: GatewayConfig) -> None:
    if not is_loopback_host(host) and cfg.single_user:
        raise UserInputError(f"{host!r} is not loopback; a gateway reachable from other machines needs keys "
                             "(define [keys.NAME] in gateway.toml and pass --config)", field="--host")


class GatewayServer:
    """A gateway on a socket (see the module docstring)."""

    def __init__(self, cfg: GatewayConfig, *, host: str = "127.0.0.1", port: int = 0, ledger: str | None = None,
                 policy: Policy | None = None, emulated: bool = False, drain_s: float = 30.0,
                 access_log: bool = False, upstream: str = "auto") -> None:
        check_bind(host, cfg)
        self.cfg = cfg
        self.host = host
        self._port = port
        self.ledger = Ledger(ledger or cfg.ledger or default_ledger_path())
        self.gateway = Gateway(cfg, self.ledger, policy=policy, emulated=emulated, upstream=upstream)
        self.drain_s = drain_s
        self.access_log = access_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def _bind(self) -> socket.socket:
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP)   # TCP_NODELAY on asyncio sockets
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(2048)
        self._port = sock.getsockname()[1]
        return sock

    def _config(self) -> uvicorn.Config:
        cfg = uvicorn.Config(build_app(self.gateway), log_config=None, log_level="warning",
                             access_log=self.access_log, backlog=2048, lifespan="on", timeout_keep_alive=300,
                             timeout_graceful_shutdown=self.drain_s, loop="asyncio", proxy_headers=False,
                             server_header=False, http="httptools")
        if self.access_log:   # one INFO line per request, through the operator's handlers, keys redacted
            acc = logging.getLogger("uvicorn.access")
            acc.setLevel(logging.INFO)
            acc.propagate = True
            if not any(isinstance(f, _RedactKeyQuery) for f in acc.filters):
                acc.addFilter(_RedactKeyQuery())
        return cfg

    def start(self) -> "GatewayServer":
        self._sock = self._bind()
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"flextier-gateway-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway failed to start")
            time.sleep(0.005)
        return self

    def run(self) -> None:
        """Foreground: until SIGINT/SIGTERM, then drain and flush."""
        self._sock = self._bind()
        self._server = uvicorn.Server(self._config())
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.ledger.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.drain_s + 10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        self.ledger.close()

    def __enter__(self) -> "GatewayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve(cfg: GatewayConfig | None = None, **kw: Any) -> Iterator[GatewayServer]:
    """A gateway for the duration of the ``with`` block."""
    s = GatewayServer(cfg or GatewayConfig(), **kw)
    s.start()
    try:
        yield s
    finally:
        s.stop()


logging.getLogger("flextier.gateway").addHandler(logging.NullHandler())
