"""The exception hierarchy is whole (issue 12, item 6).

Why: a user who writes ``except flextier.FlextierError`` (or one branch of it) must catch
everything flextier raises on purpose, without knowing which module raised it. So every
public exception class of a public flextier module must be a :class:`FlextierError`,
importable from :mod:`flextier.errors` (the same class object, not a copy) and drawn in
that module's ASCII tree. The test imports every public module and looks, so a new
exception class added anywhere without joining the hierarchy fails here.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import flextier
import flextier.errors as errors

#: Exceptions that never leave the emulator process: the server turns each into the HTTP
#: error response a real provider would send, so no flextier user ever sees the class.
EMULATOR_INTERNAL = {
    "flextier.emulator.engine.EmuError",
    "flextier.emulator.wire.WireError",
    "flextier.emulator.s3.S3Error",
    "flextier.emulator.http.AbortStream",
    "flextier.emulator.http.BadJSON",
    "flextier.emulator.http.BodyTooLarge",
}


def _public_modules() -> list[str]:
    names = ["flextier"]
    for info in pkgutil.walk_packages(flextier.__path__, prefix="flextier."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def _public_exceptions() -> dict[str, type[BaseException]]:
    """``module.Name`` -> class, for every public exception class defined in flextier."""
    found: dict[str, type[BaseException]] = {}
    for modname in _public_modules():
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not inspect.isclass(obj):
                continue
            if not issubclass(obj, BaseException) or issubclass(obj, Warning):
                continue
            if not obj.__module__.startswith("flextier"):
                continue  # an SDK's or the standard library's class, imported for use
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_walk_finds_the_known_exceptions() -> None:
    found = _public_exceptions()
    assert len(_public_modules()) > 50
    for cls in (errors.JobPaused, errors.JobBusy, errors.StoreDamaged, errors.NoSpace,
                errors.EndpointNotFound, errors.KnobError, errors.UserInputError):
        assert cls in found.values()


@pytest.mark.parametrize("qualname", sorted(set(_public_exceptions()) - EMULATOR_INTERNAL))
def test_public_exception_is_in_the_hierarchy(qualname: str) -> None:
    cls = _public_exceptions()[qualname]
    assert issubclass(cls, errors.FlextierError), f"{qualname} is not a FlextierError"
    assert getattr(errors, cls.__name__, None) is cls, f"{qualname} is not importable from flextier.errors"
    assert cls.__name__ in errors.__all__
    tree_entry = re.compile(rf"(── |^    ){cls.__name__}\b", re.M)
    assert tree_entry.search(errors.__doc__ or ""), f"{qualname} is missing from the tree in flextier.errors"


def test_emulator_internal_list_is_current() -> None:
    """Each exclusion still names a real class that is still outside the hierarchy."""
    found = _public_exceptions()
    for qualname in EMULATOR_INTERNAL:
        assert qualname in found, f"{qualname} no longer exists: drop it from EMULATOR_INTERNAL"
        assert not issubclass(found[qualname], errors.FlextierError)


def test_old_import_paths_are_the_same_classes() -> None:
    """Re-exports, not copies: ``except`` on an old path still catches the new class."""
    from flextier._loopback import OfflineViolation
    from flextier.emulator import KnobError
    from flextier.jobs.input import InvalidInput
    from flextier.jobs.lock import JobBusy
    from flextier.jobs.runner import JobPaused
    from flextier.jobs.store import NoSpace, StoreDamaged
    import flextier.policy.errors as old

    assert (JobPaused, JobBusy, StoreDamaged, NoSpace, InvalidInput, OfflineViolation, KnobError) == (
        errors.JobPaused, errors.JobBusy, errors.StoreDamaged, errors.NoSpace, errors.InvalidInput,
        errors.OfflineViolation, errors.KnobError)
    assert all(getattr(old, n) is getattr(errors, n) for n in errors.__all__)
    assert flextier.errors is errors and flextier.JobPaused is errors.JobPaused


def test_knob_error_keeps_its_message_and_value_error_base() -> None:
    """KnobError joined UserInputError without changing what a caller sees."""
    exc = errors.KnobError("slots must be >= 1", "slots")
    assert str(exc) == "slots must be >= 1" and exc.knob == "slots"
    assert isinstance(exc, ValueError) and isinstance(exc, errors.UserInputError)
