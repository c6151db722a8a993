"""Suite-wide guards.

* Network: tests may only talk to loopback. Any attempt to connect elsewhere fails
  loudly, so no test can reach a real provider by accident.
* Catalog: each test starts from the built-in catalog (no FLEXTIER_PRICES leakage).
"""
from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost",):
            return
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            raise OSError(f"test tried to reach a non-loopback host by name: {host!r}")
        if not ip.is_loopback:
            raise OSError(f"test tried to reach a non-loopback address: {host!r}")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _fresh_catalog(monkeypatch):
    from flextier.catalog import set_default_catalog

    monkeypatch.delenv("FLEXTIER_PRICES", raising=False)
    set_default_catalog(None)
    yield
    set_default_catalog(None)
