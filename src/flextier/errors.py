"""One exception hierarchy for everything flextier raises.

Every provider speaks a different error dialect (OpenAI 429 ``resource_unavailable``,
Gemini 503 ``UNAVAILABLE``, Bedrock ``ThrottlingException``, Anthropic 529). The
adapters translate each of them into exactly one class below, so the retry policy,
the runner and user code branch on meaning, not on wire details::

    FlextierError
    ├── UserInputError            bad job file, flag or price file (CLI: one line, exit 2); also a ValueError
    │   ├── UnknownModel          a model name the catalog does not know
    │   ├── InvalidInput          the job file's first pass found invalid records; nothing was sent
    │   ├── JobBusy               another live process owns this job or writes its results file
    │   ├── StoreDamaged          the job store is not a readable SQLite database
    │   ├── OfflineViolation      a client would leave loopback while emulating (nothing was sent)
    │   ├── KnobError             an unknown emulator knob or a value of the wrong type/range
    │   └── RequestTooLarge       a request to the gateway over its body cap (413; nothing sent)
    ├── JobPaused                 the job stopped resumably (budget cap, quota, bad key, interrupt):
    │                             ``kind`` says why; CLI exit 3; resume it once the cause is fixed
    ├── NoSpace                   the disk holding the store or results file is full -> the job pauses
    ├── BudgetRefused             a gateway key's daily/monthly USD budget cannot hold the call (429; nothing sent)
    └── ProviderError             anything a provider call can end with
        ├── FlexCapacityUnavailable   flex shed: OpenAI 429 resource_unavailable / flex_unavailable,
        │                             Gemini 503 UNAVAILABLE or 429 RESOURCE_EXHAUSTED on flex,
        │                             Bedrock ThrottlingException / ServiceUnavailableException on flex
        │                             -> back off, then fall back per policy. Never billed.
        ├── RateLimited               429 rate_limit_exceeded -> honour retry-after; not a flex failure
        ├── QuotaExhausted            insufficient_quota / spend limit -> never retried
        ├── TierNotSupported          flex asked of a model without flex -> standard (if allowed) or batch
        ├── Transient                 5xx, connection reset before any response -> retried with backoff
        ├── Timeout                   the call ran past its timeout -> may have been billed; resent once
        ├── Overloaded                Anthropic 529 overloaded_error -> retried with backoff
        └── BadRequest                other 4xx -> never retried
            ├── Unauthorized          401/403, a refused or missing key -> the job pauses at once
            └── EndpointNotFound      404/405 on the endpoint itself (no such route: a wrong
                                      --base-url), not a provider's "model not found" -> pauses too

``ProviderError`` carries ``status``, ``code`` (the provider's own error code),
``retry_after`` (seconds, when the provider said), ``tier`` (the tier requested) and
``possibly_billed`` (True when the request may have been processed before it failed).

Why one module: a user catches ``FlextierError`` (or one branch of it) without knowing
which part of flextier raised it, so every class a user can see is defined here and
importable from ``flextier.errors``. The modules that raise them re-export them under
their old names (``flextier.jobs.runner.JobPaused``, ``flextier.jobs.lock.JobBusy``,
``flextier.jobs.store.StoreDamaged``/``NoSpace``, ``flextier.jobs.input.InvalidInput``,
``flextier.emulator.KnobError``...), and ``flextier.policy.errors`` re-exports the whole
module for compatibility. This module imports nothing from flextier, so any module may
import it without a cycle. Warnings (``flextier.policy.fallback.FlexFallbackWarning``) are
not errors and are not part of this tree.
"""
from __future__ import annotations

import os


class FlextierError(Exception):
    """Base class of every error flextier raises on purpose."""


class UserInputError(FlextierError, ValueError):
    """Bad input from a user: names the file, line and field so the CLI can print one line.

    Raised before anything is sent, so nothing is charged for it.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}"
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        fld = f"{self.field}: " if self.field else ""
        return f"{where}{fld}{self.message}"


class UnknownModel(UserInputError):
    """A model name that is neither a catalog name nor an alias; lists the closest names."""

    def __init__(self, name: str, suggestions: list[str], *, field: str = "model",
                 file: str | None = None, line: int | None = None) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f" (closest: {', '.join(suggestions)})" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint}", field=field, file=file, line=line)


class InvalidInput(UserInputError):
    """The first pass found invalid records; nothing was sent.

    ``errors`` holds the first :data:`flextier.jobs.input.MAX_REPORTED_ERRORS` of them (each a
    one-line :class:`UserInputError`), ``count`` how many there were in all.
    """

    def __init__(self, file: str, errors: list[UserInputError], count: int) -> None:
        self.errors = errors
        self.count = count
        first = errors[0].one_line() if errors else ""
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(
            f"{count} invalid record{'s' if count != 1 else ''}; nothing was sent "
            f"(fix them, or pass --skip-invalid to run without them). First: {first}{more}",
            file=file)


class JobBusy(UserInputError):
    """Another live process owns this job (or writes this results file). CLI: one line, exit 2."""


class StoreDamaged(UserInputError):
    """The store file is not a readable SQLite database (corrupted, truncated, not a store). Exit 2."""


class OfflineViolation(UserInputError):
    """A client would reach a non-loopback endpoint while emulating (nothing was sent)."""


class KnobError(UserInputError):
    """An unknown emulator knob or a value of the wrong type/range.

    ``knob`` names the knob. The message is the bare message (no ``field:`` prefix): the CLI
    adds the flag it came from (``--knob``, ``--profile-file``).
    """

    def __init__(self, message: str, knob: str | None = None) -> None:
        self.knob = knob
        super().__init__(message)


class JobPaused(FlextierError):
    """The job stopped before finishing, resumably (budget cap, quota, interrupt).

    ``kind`` says why (for example ``interrupted``, ``invalid``); the CLI exits 3.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class NoSpace(FlextierError):
    """The disk holding the store or the results file is full. The job pauses (exit 3); nothing is lost:
    what was committed stays, what was not is recovered (and flagged possibly billed) on resume."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        super().__init__(f"no space left on device while writing {self.path}; the job is paused: free some "
                         f"space and resume it")


class RequestTooLarge(UserInputError):
    """A request to the gateway is larger than its body cap; it is refused with 413 and not sent."""


class BudgetRefused(FlextierError):
    """A gateway key's USD budget (``window`` ``day`` or ``month``) cannot hold the call's reserved
    cost, or cannot bound it (unknown price); the call is refused (429) and nothing is sent."""

    def __init__(self, message: str, window: str) -> None:
        super().__init__(message)
        self.window = window


class ProviderError(FlextierError):
    """A provider call failed. Subclasses say what to do about it."""

    retryable: bool = False

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None, tier: str | None = None,
                 provider: str | None = None, possibly_billed: bool = False) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.tier = tier
        self.provider = provider
        self.possibly_billed = possibly_billed
        super().__init__(message or self.__class__.__name__)

    def __str__(self) -> str:
        bits = [self.__class__.__name__]
        if self.provider:
            bits.append(self.provider)
        if self.status is not None:
            bits.append(str(self.status))
        if self.code:
            bits.append(self.code)
        head = " ".join(bits)
        return f"{head}: {self.message}" if self.message else head


class FlexCapacityUnavailable(ProviderError):
    """The provider shed a flex request. Not billed; back off, then fall back per policy."""

    retryable = True


class RateLimited(ProviderError):
    """An ordinary rate limit (RPM/TPM). Slows the job down; not a flex capacity failure."""

    retryable = True


class QuotaExhausted(ProviderError):
    """Out of quota or over a spend limit. Retrying cannot help."""

    retryable = False


class TierNotSupported(ProviderError):
    """The requested tier is not offered for this model (e.g. flex on Claude)."""

    retryable = False


class Transient(ProviderError):
    """5xx or a connection reset before any response: safe to retry."""

    retryable = True


class Timeout(ProviderError):
    """The call ran past its timeout. The provider may have processed, and billed, it."""

    retryable = True


class Overloaded(ProviderError):
    """Anthropic 529 overloaded_error: provider-wide load, retry with backoff."""

    retryable = True


class BadRequest(ProviderError):
    """Any other 4xx: the request itself is wrong. Never retried."""

    retryable = False


class Unauthorized(BadRequest):
    """The provider refused the credentials (401/403, Bedrock ``UnrecognizedClientException``,
    ``AccessDeniedException``, or no AWS credentials at all). A bad key fails every request
    alike, so a job stops at the first one instead of failing a million items."""


class EndpointNotFound(BadRequest):
    """The endpoint itself does not exist: a 404 or 405 that is not the provider's own error
    (a plain "Not Found" page, a generic JSON shape, OpenAI's "Invalid URL"), so the base URL
    or path is wrong. Like a refused key it fails every request alike: a job pauses at the
    first one, with nothing marked failed, and resumes once the URL is fixed.

    A provider's "model not found" 404 (its error JSON naming the model) stays a
    :class:`BadRequest`: the endpoint is right, the request is not.
    ``url`` is the URL that was called, without credentials (user:password, query string).
    """

    def __init__(self, message: str = "", *, url: str | None = None, **kw: object) -> None:
        self.url = url
        super().__init__(message, **kw)  # type: ignore[arg-type]


__all__ = [
    "Unauthorized", "EndpointNotFound",
    "InvalidInput", "JobBusy", "StoreDamaged", "OfflineViolation", "KnobError", "JobPaused", "NoSpace",
    "RequestTooLarge", "BudgetRefused",
    "FlextierError", "UserInputError", "UnknownModel", "ProviderError",
    "FlexCapacityUnavailable", "RateLimited", "QuotaExhausted", "TierNotSupported",
    "Transient", "Timeout", "Overloaded", "BadRequest",
]
