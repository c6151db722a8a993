"""flextier: run LLM API work on the providers' flex tier at half price, without missing deadlines.

Public API (everything else is private and may change):

* :func:`wrap` / :func:`info` - wrap an OpenAI, Gemini, Bedrock or Anthropic client you already have.
* :func:`http_client` / :func:`async_http_client` - an httpx client with flex, for libraries that take one.
* :func:`totals` - the running tally (calls, tiers, cost, saving) for the process.
* :func:`complete` / :func:`acomplete` - one provider-neutral call with flex, backoff and fallback.
* :func:`run_job` - the deadline-aware bulk runner, from Python.
* :class:`Policy` - timeouts, backoff and fallback, shared by all of the above.
* :mod:`flextier.errors` - the one exception hierarchy.
* :class:`Usage`, :func:`price_usage`, :func:`load_catalog` - prices and cost math.
"""
from __future__ import annotations

from ._interrupt import install_if_cli as _install_if_cli

_install_if_cli()  # first: a Ctrl-C during the CLI's start-up is one line and exit 130 (see _interrupt)

import importlib  # noqa: E402
from typing import Any  # noqa: E402

from .catalog import Catalog, ModelEntry, load_catalog  # noqa: E402
from .cost import Cost, Usage, price_usage  # noqa: E402
from . import errors  # noqa: E402
from .errors import *  # noqa: F401,F403,E402  (the documented hierarchy)

__version__ = "0.1.0"

# Heavier parts load on first use so `import flextier` stays fast and light.
_LAZY = {
    "wrap": "flextier.client",
    "info": "flextier.client",
    "complete": "flextier.client",
    "acomplete": "flextier.client",
    "totals": "flextier.client",
    "Tally": "flextier.client",
    "http_client": "flextier.client",
    "async_http_client": "flextier.client",
    "CompletionStream": "flextier.client",
    "AsyncCompletionStream": "flextier.client",
    "CallResult": "flextier._types",
    "Policy": "flextier.policy.fallback",
    "run_job": "flextier.jobs.api",
    "arun_job": "flextier.jobs.api",
}


# Subpackages the README reaches as attributes (``flextier.emulator.serve(...)`` right after
# ``import flextier``); imported on first touch, like the names above.
_LAZY_MODULES = ("emulator", "jobs", "providers", "batch", "client", "estimate", "advise")


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'flextier' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


__all__ = ["Catalog", "ModelEntry", "load_catalog", "Cost", "Usage", "price_usage", "errors",
           *errors.__all__, *_LAZY]
