"""Suite-wide guards.

* Network: tests may only talk to loopback. Any attempt to connect elsewhere, or to
  resolve a non-loopback name (a DNS query leaves the machine too), fails loudly, so no
  test can reach a real provider by accident. Every refused attempt is also recorded in
  ``BLOCKED``, and a test during which one happened fails even if the code under test
  swallowed the error (a retry loop, a lane that falls back): offline means offline.
* Catalog: each test starts from the built-in catalog (no FLEXTIER_PRICES leakage).
* History: the per-user history (flextier.history) is off (FLEXTIER_HISTORY=off, inherited by
  subprocesses): no test writes the user's own, and no test's attempts become another test's learned
  forecast. Tests of the history set FLEXTIER_HISTORY to a file of their own.
"""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ["FLEXTIER_HISTORY"] = "off"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo

#: every non-loopback connection or name lookup a test attempted (and was refused)
BLOCKED: list[str] = []


def _refuse(why: str) -> OSError:
    BLOCKED.append(why)
    return OSError(why)


def _loopback_name(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost",):
            return
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            raise _refuse(f"test tried to reach a non-loopback host by name: {host!r}")
        if not ip.is_loopback:
            raise _refuse(f"test tried to reach a non-loopback address: {host!r}")


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback_name(host):
        BLOCKED.append(f"test tried to resolve a non-loopback name: {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"test tried to resolve a non-loopback name: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


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
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


@pytest.fixture
def blocked_network() -> list[str]:
    """The suite's record of refused non-loopback attempts (tests compare its length before and after)."""
    return BLOCKED


@pytest.fixture(autouse=True)
def _offline_means_offline(request):
    """Fail the test if it attempted any non-loopback connection or lookup, swallowed or not."""
    before = len(BLOCKED)
    yield
    leaked = BLOCKED[before:]
    if leaked and not request.node.get_closest_marker("allow_blocked_network"):
        pytest.fail(f"{len(leaked)} non-loopback network attempt(s): {leaked[:3]}", pytrace=False)


@pytest.fixture(autouse=True)
def _fresh_catalog(monkeypatch):
    from flextier.catalog import set_default_catalog

    monkeypatch.delenv("FLEXTIER_PRICES", raising=False)
    set_default_catalog(None)
    yield
    set_default_catalog(None)


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_blocked_network: the test provokes a refused non-loopback attempt "
                                       "on purpose")
