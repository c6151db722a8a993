"""URLs as flextier may show or store them: without the parts where credentials hide.

Why a module of its own: the job store records a job's base URL and the provider adapters
name the URL a wrong ``--base-url`` answered from; both must strip the same parts, and the
adapters sit below the jobs package, so the one function lives below both (no
import cycles, ``providers -> jobs`` was one).
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str | None) -> str | None:
    """A base URL without user:password, query string or fragment (where keys sometimes hide)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
