"""The ``flextier`` command: a thin Typer layer over the library.

Each area registers its own commands from a module of this package (``run``,
``emulate``, ``catalog``), so the CLI stays a list of imports. Bad user input never produces a traceback: every
:class:`~flextier.errors.UserInputError` and every usage error becomes one line on
stderr and exit code 2, before anything is sent or charged.
"""
from __future__ import annotations

import importlib
from typing import Optional

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


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one error line and return the Exit to raise (exit 2 = bad input)."""
    typer.echo(f"flextier: error: {message}", err=True)
    return typer.Exit(code)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry: run the app, turning user errors into one line and exit 2."""
    try:
        rv = app(args=argv, prog_name="flextier", standalone_mode=False)
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
    except KeyboardInterrupt:
        typer.echo("flextier: interrupted", err=True)
        return 130


