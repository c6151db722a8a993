"""Provider-neutral shapes shared by the client core, the runner and the batch lane.

They are the contract between layers: the runner turns job lines into
:class:`CallRequest`, an adapter turns one attempt into an :class:`AttemptOutcome`
(or raises a :mod:`flextier.errors` class), and the policy loop collects
attempts into a :class:`CallResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .catalog import ModelEntry
from .cost import Usage


@dataclass
class CallRequest:
    """One logical request, independent of tier.

    Either ``messages`` (OpenAI chat-style ``[{"role", "content"}]``) plus ``params``
    (``max_tokens``, ``temperature``, ...) that each adapter translates to its wire
    format, or ``native`` (a provider-native body, e.g. the ``body`` of an OpenAI batch
    line) sent as-is apart from the tier field. ``endpoint`` picks the OpenAI API:
    ``"chat"`` (``/v1/chat/completions``) or ``"responses"`` (``/v1/responses``).
    """

    model: ModelEntry
    messages: list[dict[str, Any]] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] | None = None
    endpoint: str = "chat"
    custom_id: str | None = None
    #: the job this request belongs to, when the provider should keep its answer findable by
    #: (job, custom_id) after a crash (OpenAI chat: ``store: true`` + ``metadata``; issue 19)
    resume_tag: str | None = None


@dataclass
class AttemptOutcome:
    """A successful single attempt, as the provider reported it."""

    body: dict[str, Any]          # the provider's JSON response body (wire shape)
    text: str
    served_tier: str              # canonical tier the provider says served it
    usage: Usage
    headers: dict[str, str] = field(default_factory=dict)
    raw: Any = None               # the SDK object, when an SDK made the call


@dataclass
class Attempt:
    """One try of a call: which tier, how it ended, how long it took."""

    tier: str                     # tier requested
    outcome: str                  # "ok" or the error class name (e.g. "FlexCapacityUnavailable")
    latency_s: float
    served_tier: str | None = None
    status: int | None = None
    error_code: str | None = None
    retry_after: float | None = None
    possibly_billed: bool = False
    started_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("tier", "outcome", "latency_s", "served_tier", "status",
                                             "error_code", "retry_after", "possibly_billed", "started_at")}


@dataclass
class CallResult:
    """The end of a logical call: the answer, the tier that served it, and the money."""

    model: ModelEntry
    text: str
    raw: Any
    tier: str
    usage: Usage | None          # None = unknown (a stream cut or abandoned before its final usage)
    cost: Decimal | None
    standard_cost: Decimal | None
    attempts: list[Attempt] = field(default_factory=list)
    body: dict[str, Any] | None = None

    @property
    def saving(self) -> Decimal | None:
        if self.cost is None or self.standard_cost is None:
            return None
        return self.standard_cost - self.cost

    @property
    def possibly_billed(self) -> int:
        """Attempts that may have been billed although no usage came back (timeouts after accept)."""
        return sum(1 for a in self.attempts if a.possibly_billed)
