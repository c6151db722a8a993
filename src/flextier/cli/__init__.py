"""The ``flextier`` command: a thin Typer layer over the library.

Each area registers its own commands from a module of this package (``run``,
``emulate``, ``catalog``), so the CLI stays a list of imports. Bad user input never produces a traceback: every
:class:`~flextier.errors.UserInputError` and every usage error becomes one line on
stderr and exit code 2, before anything is sent or charged.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Optional

import typer

from .compat import Abort, Exit, NoArgsIsHelpError, UsageError

from ..errors import UserInputError

app = typer.Typer(
    name="flextier",
    help="Run LLM API work on the flex tier at half price, without missing deadlines or losing work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _print_version(value: bool) -> None:
    """``--version``: the package version, then exit 0 (eager, so it needs no command)."""
    if value:
        from .. import __version__

        typer.echo(f"flextier {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    prices: Optional[str] = typer.Option(
        None, "--prices", help="Price file (JSON or TOML) layered over the built-in catalog, for every command."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Show the version and exit."),
) -> None:
    """Global options. ``FLEXTIER_PRICES`` works like ``--prices``."""
    if prices:
        from ..catalog import load_catalog, set_default_catalog

        set_default_catalog(load_catalog(prices))


# Modules that add commands with `register(app)`. Missing ones are skipped so each
# area can land on its own.
_COMMAND_MODULES = (
    "flextier.cli.catalog",    # estimate, models, advise
    "flextier.cli.emulate",    # emulate
    "flextier.cli.run",        # run, resume, status, report
    "flextier.cli.when",       # when (time of day, from history)
    "flextier.cli.serve",      # serve (the gateway)
)

for _mod in _COMMAND_MODULES:
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as _exc:  # pragma: no cover - an area not landed yet
        if _exc.name != _mod:
            raise


_ENDED: list[str] = []  # commands that ran to an end of their own (see _interruptible)


class _Interrupted(Exception):
    """A Ctrl-C that reached a command's body: :func:`main` prints one line and returns 130."""


def _interruptible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, its KeyboardInterrupt re-raised as :class:`_Interrupted`.

    Why: Typer turns a KeyboardInterrupt inside a command into a silent exit 130, so a Ctrl-C
    between start-up and the job's own signal handlers (:mod:`flextier.jobs.signals`) said
    nothing. ``functools.wraps`` keeps the signature Typer reads the options from. A command
    that ends any other way (its own 130 after a graceful stop included) is noted in
    :data:`_ENDED`, so :func:`main` can tell Typer's silent 130 for a Ctrl-C during option
    parsing (before any command ran) from a command's own.
    """
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            rv = fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc
        except BaseException:
            _ENDED.append(fn.__name__)
            raise
        _ENDED.append(fn.__name__)
        return rv

    return call


for _info in app.registered_commands:
    if _info.callback is not None:
        _info.callback = _interruptible(_info.callback)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one error line and return the Exit to raise (exit 2 = bad input)."""
    typer.echo(f"flextier: error: {message}", err=True)
    return typer.Exit(code)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry: run the app, turning user errors into one line and exit 2."""
    from .._interrupt import restore

    restore()  # from here a Ctrl-C is a KeyboardInterrupt, caught below (one line, 130)
    try:
        rv = app(args=argv, prog_name="flextier", standalone_mode=False)
        if rv == 130 and not _ENDED:  # Typer's own answer to a Ctrl-C while it parsed the options
            raise _Interrupted()
        return int(rv or 0) if isinstance(rv, int) else 0
    except UserInputError as exc:
        typer.echo(f"flextier: error: {exc.one_line()}", err=True)
        return 2
    except NoArgsIsHelpError as exc:
        ctx = getattr(exc, "ctx", None)
        typer.echo(ctx.get_help() if ctx else str(exc))
        return 0
    except UsageError as exc:
        msg = exc.format_message().replace("\n", " ")
        param = getattr(exc, "param", None)
        flag = (getattr(param, "opts", None) or [getattr(param, "name", "")])[0] if param else ""
        if flag and flag not in msg:
            msg = f"{flag}: {msg}"
        typer.echo(f"flextier: error: {msg}", err=True)
        return 2
    except Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except Abort:
        typer.echo("flextier: aborted", err=True)
        return 130
    except (KeyboardInterrupt, _Interrupted):
        typer.echo("flextier: interrupted", err=True)
        # CPython notes a KeyboardInterrupt that escaped an exec()'d string (a dataclass's generated
        # __init__ while importing, say) and then exits by SIGINT instead of our 130, even though
        # it was caught here; the next exec() of a string clears that note.
        exec("pass", {})  # noqa: S102
        return 130


