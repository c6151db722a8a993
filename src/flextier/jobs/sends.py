"""The runner's side of the store's send records: which requests are out, durably.

Why: a crash used to lose two facts the provider's bill does not forget.
A timeout or reset mark lived in memory until its item finished, so a kill lost it (an item
billed five times was flagged three times); and every claimed item was flagged after a
crash, sent or not (a capped job said "1,012 sends" where 76 were unrecorded). With a
record per send, committed before the request leaves and cleared when its outcome is known,
"possibly billed" counts real sends, per item, and a resumed ``--max-cost`` job holds every
unresolved send against the cap at the money reserved for it.

The commit is a group commit: :meth:`SendBook.opened` only queues the record; the first
attempt of a dispatch round to run calls :meth:`SendBook.make_durable`, which commits the
records of every attempt started in that round in one transaction (the attempts are tasks
that start only after the round), so the store's batching and the runner's throughput stay.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Hashable

from .store import JobStore


class SendBook:
    """Send records of the attempts of one run, keyed like budget reservations (``(seq, lane)``)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._ids: dict[Hashable, int] = {}

    def opened(self, key: Hashable, seq: int, tier: str, reserved: Decimal | None, now: float) -> None:
        """An attempt is about to be sent: queue its record (with its reserved upper-bound cost)."""
        self._ids[key] = self.store.open_send(seq, tier, reserved, now)

    def make_durable(self, key: Hashable) -> None:
        """Before the request of ``key`` leaves: commit its record (and every other queued one).
        Raises if the store cannot commit; the request must then not be sent."""
        sid = self._ids.get(key)
        if sid is not None and not self.store.send_committed(sid):
            self.store.commit_sends()

    def settled(self, key: Hashable) -> None:
        """The outcome of ``key`` is known (an answer, a refusal, or it never left): the flush
        that records that outcome clears the record."""
        sid = self._ids.pop(key, None)
        if sid is not None:
            self.store.close_send(sid)

    def lost(self, key: Hashable) -> None:
        """``key`` ended without an outcome but may have been billed (timeout, reset, cut off):
        the record stays, as ``unknown``, and its item counts one more possibly billed send."""
        sid = self._ids.pop(key, None)
        if sid is not None:
            self.store.lose_send(sid)

    def remote(self, key: Hashable, remote_id: str) -> None:
        """The provider accepted ``key`` under ``remote_id`` and will answer later: record it
        durably now, so a crash before the answer is retrieved on resume, not resent."""
        sid = self._ids.get(key)
        if sid is not None:
            self.store.note_remote(sid, remote_id)

    def __len__(self) -> int:
        return len(self._ids)


__all__ = ["SendBook"]
