"""A client that goes away mid-body (a killed run) is not a server error."""
from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlparse

import httpx

from flextier.emulator import serve


def test_client_gone_mid_body_logs_no_error_and_server_keeps_serving(caplog):
    caplog.set_level(logging.ERROR)
    with serve(profile="calm", time_scale=1000) as emu:
        u = urlparse(emu.openai_base_url)
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: 1000\r\n\r\n{\"model\": \"gpt-5.4-mini\", ")
        time.sleep(0.05)
        s.close()
        time.sleep(0.2)
        r = httpx.post(emu.openai_base_url + "/chat/completions", headers={"authorization": "Bearer t"},
                       json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
    assert not [rec for rec in caplog.records if "Exception in ASGI" in rec.getMessage()
                or "ClientDisconnect" in rec.getMessage() or rec.exc_info]
