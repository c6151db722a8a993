"""Helpers of the hardening suite: the CLI in-process, emulator helpers, and a fuzzing provider.

* :func:`run_cli` calls ``flextier.cli.main`` in-process and returns (exit code, stdout, stderr).
* ``calm_emu`` is one in-process emulator per module (fast time scale).
* ``fuzz_server`` is a tiny Starlette app on 127.0.0.1 (uvicorn in a thread) that answers
  the OpenAI, Gemini, Bedrock and Anthropic paths in a chosen broken way (``server.mode``).
  It also answers ``GET /_emulator/clock`` so the runner plays backoff on a fast clock.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator


MODEL = "openai/gpt-5.4-mini"
START = "2026-11-24T14:00"
PROVIDER_MODELS = {
    "openai": "openai/gpt-5.4-mini",
    "gemini": "gemini/gemini-2.5-flash",
    "bedrock": "bedrock/us.amazon.nova-pro-v1:0",
    "anthropic": "anthropic/claude-haiku-4-5",
}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``flextier ARGS`` in-process: (exit code, stdout, stderr). Tracebacks would land in stderr."""
    from flextier.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except BaseException as exc:  # anything escaping main() is a bug: make it visible
            import traceback

            traceback.print_exc(file=err)
            rc = -1 if not isinstance(exc, SystemExit) else int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url: str, timeout: float = 20.0) -> None:
    import httpx

    end = time.time() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except Exception:
            if time.time() > end:
                raise
            time.sleep(0.05)


async def lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan scope (startup, shutdown) for the test servers below."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """The whole ASGI request body."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


@contextlib.contextmanager
def serve_in_thread(srv: Any) -> Iterator[Any]:
    """Run ``srv.app()`` under uvicorn in a thread on a free 127.0.0.1 port (``srv.port``)
    until the block ends. Uvicorn's error log is off: these servers misbehave on purpose."""
    import logging

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    srv.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(srv.app(), log_level="critical", lifespan="on", access_log=False))
    logging.getLogger("uvicorn.error").disabled = True
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    wait_http(srv.root + "/_emulator/clock")
    try:
        yield srv
    finally:
        server.should_exit = True
        th.join(10)
        sock.close()
        logging.getLogger("uvicorn.error").disabled = False


def emu_billed(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(r["cost"]) for r in rows if r.get("cost")), Decimal(0))


def store_items(db: Path) -> list[dict[str, Any]]:
    from flextier.jobs.store import JobStore

    with JobStore(db, create=False) as st:
        return [dict(r) for r in st.iter_items()]


# --------------------------------------------------------------------------------------
# the fuzzing provider
# --------------------------------------------------------------------------------------

MODES = ("ok", "malformed_json", "no_usage", "unknown_tier", "error_200", "cut_stream", "wrong_ctype", "empty",
         "echo_key")


def _ok_body(provider: str, tier: str | None, *, usage: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """A valid response of each provider, with ``tier`` as the served tier (wire spelling)."""
    headers: dict[str, str] = {}
    if provider == "openai":
        b: dict[str, Any] = {"id": "chatcmpl-fuzz", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                          "finish_reason": "stop"}],
                             "service_tier": tier or "flex"}
        if usage:
            b["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    elif provider == "gemini":
        b = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
             "modelVersion": "m"}
        if usage:
            b["usageMetadata"] = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
        headers["x-gemini-service-tier"] = tier or "flex"
    elif provider == "bedrock":
        b = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
             "metrics": {"latencyMs": 5}, "serviceTier": {"type": tier or "flex"}}
        if usage:
            b["usage"] = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    else:
        b = {"id": "msg_fuzz", "type": "message", "role": "assistant", "model": "m",
             "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}
        if usage:
            b["usage"] = {"input_tokens": 10, "output_tokens": 5, "service_tier": tier or "standard"}
    return b, headers


def _error_body(provider: str, message: str) -> dict[str, Any]:
    if provider == "gemini":
        return {"error": {"code": 500, "message": message, "status": "INTERNAL"}}
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    if provider == "bedrock":
        return {"message": message}
    return {"error": {"message": message, "type": "server_error", "code": None}}


class FuzzServer:
    """State of the fuzzing app: the current mode, and every request it saw (path, headers)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self.time_scale = 1000.0
        self.t0 = time.time()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        return self.root + "/v1" if provider == "openai" else self.root

    def app(self) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                return await lifespan(receive, send)
            path = scope["path"]
            body = await read_body(receive)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if path == "/_emulator/clock":
                now = 1_795_000_000.0 + (time.time() - self.t0) * self.time_scale
                return await _respond(send, 200, json.dumps({"now": now, "time_scale": self.time_scale}).encode())
            provider = ("openai" if path.endswith("/chat/completions") or path.endswith("/responses") else
                        "gemini" if ":generateContent" in path else
                        "bedrock" if path.endswith("/converse") else
                        "anthropic" if path.endswith("/messages") else None)
            self.requests.append({"path": path, "headers": headers, "body": body, "provider": provider})
            if provider is None:
                return await _respond(send, 404, b'{"error": {"message": "no such path"}}')
            await self._answer(provider, headers, send)

        return asgi

    async def _answer(self, provider: str, headers: dict[str, str], send: Any) -> None:
        mode = self.mode
        if mode == "ok":
            b, h = _ok_body(provider, None)
            return await _respond(send, 200, json.dumps(b).encode(), h)
        if mode == "malformed_json":
            return await _respond(send, 200, b'{"id": "x", "choices": [{"message": {"content": "hi"', {})
        if mode == "no_usage":
            b, h = _ok_body(provider, None, usage=False)
            return await _respond(send, 200, json.dumps(b).encode(), h)
        if mode == "unknown_tier":
            b, h = _ok_body(provider, "turbo-deluxe")
            return await _respond(send, 200, json.dumps(b).encode(), h)
        if mode == "error_200":
            return await _respond(send, 200, json.dumps(_error_body(provider, "internal error, try again")).encode())
        if mode == "wrong_ctype":
            return await _respond(send, 200, b"<html><body>502 Bad Gateway</body></html>", {},
                                  ctype=b"text/html")
        if mode == "empty":
            return await _respond(send, 200, b"", {})
        if mode == "echo_key":
            secret = headers.get("authorization") or headers.get("x-goog-api-key") or headers.get("x-api-key") or ""
            return await _respond(send, 401, json.dumps(
                {"error": {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error",
                           "code": "invalid_api_key"}}).encode())
        if mode == "cut_stream":
            # an SSE-looking body, chunked, cut off in the middle of an event: the connection
            # closes without the terminating chunk
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b'data: {"id": "x", "choices": [{"delta": {"cont',
                        "more_body": True})
            await asyncio.sleep(0.01)
            raise _CutStream()
        raise AssertionError(mode)


class _CutStream(Exception):
    pass


async def _respond(send: Any, status: int, body: bytes, headers: dict[str, str] | None = None,
                   ctype: bytes = b"application/json") -> None:
    raw = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def python_env(**extra: str) -> dict[str, str]:
    """Environment for a ``python -m flextier`` subprocess: this interpreter's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


PY = sys.executable
