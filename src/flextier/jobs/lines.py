"""The output line of a finished item: one format for the online lanes and the batch lane.

An output line is an OpenAI batch output line (``id``, ``custom_id``, ``response``, ``error``)
plus a ``flextier`` object (served tier, attempts, cost, standard cost, possibly billed and,
for a batch answer, the local batch id). Built here only, so every lane writes the same shape
(README, "Output").
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..errors import ProviderError

__all__ = ["answer_line", "failure_line", "error_line", "dumps"]


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 kept as is (the output file and the store hold the same bytes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _s(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def error_line(err: BaseException) -> dict[str, Any]:
    """The ``error`` object of a failed output line: code and a short message, no secrets."""
    if isinstance(err, ProviderError):
        code = err.code or type(err).__name__
        msg = err.message or type(err).__name__
    else:
        code, msg = type(err).__name__, str(err)
    return {"code": str(code), "message": str(msg)[:500], "type": type(err).__name__}


def answer_line(seq: int, custom_id: str, *, request_id: str | None, body: Any, tier: str | None, attempts: int,
                cost: Decimal | None, standard_cost: Decimal | None, possibly_billed: bool,
                batch: str | None = None, batch_item: bool = False) -> str:
    """The line of an answered item (``cost`` None: the served tier has no known price).

    ``batch_item``: answered through the batch lane; ``flextier.batch`` names the local batch
    (None once the item has left an abandoned batch).
    """
    meta: dict[str, Any] = {"tier": tier, "attempts": attempts, "cost": _s(cost), "standard_cost": _s(standard_cost),
                            "possibly_billed": possibly_billed}
    if batch_item:
        meta["batch"] = batch
    return dumps({"id": f"flextier_req_{seq}", "custom_id": custom_id,
                  "response": {"status_code": 200, "request_id": request_id, "body": body},
                  "error": None, "flextier": meta})


def failure_line(seq: int, custom_id: str, *, status: int | None, error: dict[str, Any], attempts: int,
                 possibly_billed: bool, batch: str | None = None, batch_item: bool = False) -> str:
    """The line of a failed item: ``error`` from :func:`error_line` (or a batch line's error)."""
    meta: dict[str, Any] = {"tier": None, "attempts": attempts, "cost": "0", "standard_cost": None,
                            "possibly_billed": possibly_billed}
    if batch_item:
        meta["batch"] = batch
    return dumps({"id": f"flextier_req_{seq}", "custom_id": custom_id,
                  "response": None if status is None else {"status_code": status, "request_id": None,
                                                           "body": {"error": error}},
                  "error": error, "flextier": meta})
