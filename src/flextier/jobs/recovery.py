"""Resume after a crash: read back what the provider already answered, before anything is resent.

Why its own step: a send a crash cut off may have been answered and billed. Where the provider
keeps answers (OpenAI Chat Completions with ``store: true`` and the job's name and item id in
``metadata``; Responses background mode, whose response id the send record holds from before
the answer; see README "Resume without paying twice"), the first run of a resumed job looks
those items up and records every answer found as billed -- the first as the item's result, any
more as ``duplicate`` ledger rows -- through the one accounting step
(:class:`~.accounting.Accounting`). Only items with nothing found are sent again. A lookup never
costs an answer: any failure means "resend", as without it.
"""
from __future__ import annotations

import logging
from typing import Any

from .accounting import Accounting
from .store import JobStore
from .work import work_of

log = logging.getLogger("flextier.runner")

__all__ = ["resume_tag", "settle_from_provider"]


def resume_tag(store: JobStore, adapter: Any, *, enabled: bool) -> str | None:
    """The job's name at the provider (stored-answer metadata), or None when lookups are off
    (``--no-provider-store``) or the adapter cannot look answers up."""
    if not enabled or not hasattr(adapter, "find_stored"):
        return None
    return (store.job() or {}).get("name") or None


def settle_from_provider(store: JobStore, adapter: Any, accounting: Accounting, *, tag: str | None,
                         now: float) -> int:
    """Record as billed the stored answers of the sends a crash cut off; returns how many items
    were settled that way (their unknown sends become ``settled``, see
    :meth:`JobStore.settle_unknown_sends`). Committed before the run starts."""
    if tag is None:
        return 0
    pend = store.unknown_send_items()
    if not pend:
        return 0
    remote = store.unknown_remote_ids()   # Responses background ids recorded before the answer
    by_id = {c.custom_id: remote[c.seq] for c, _, _ in pend if c.seq in remote}
    try:
        if by_id:
            found = adapter.find_stored(tag, [c.custom_id for c, _, _ in pend], remote=by_id)
        else:
            found = adapter.find_stored(tag, [c.custom_id for c, _, _ in pend])
    except Exception as exc:  # a lookup never costs an answer: resend instead
        log.warning("stored answers could not be read back (%s); resending", exc)
        return 0
    settled = 0
    for c, tier, _unknown in pend:
        outcomes = []
        for b in found.get(c.custom_id) or ():
            try:
                outcomes.append(adapter.outcome(b, {}, tier or "flex"))
            except Exception:
                continue
        if not outcomes:
            continue
        k = store.settle_unknown_sends(c.seq, len(outcomes))
        w = work_of(c)
        for i, oc in enumerate(outcomes[:k]):
            lane = tier or oc.served_tier
            priced = accounting.bill(w, lane, oc, 0.0, now, duplicate=i > 0)
            if i == 0:
                accounting.answered(w, lane, oc, priced, 0.0, now)
        settled += 1
    if settled:
        store.event(now, "settled_from_provider", {"items": settled})
        store.flush()
    return settled
