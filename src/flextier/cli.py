"""The ``flextier`` command: a thin Typer layer over the library.

Each area registers its own commands from a private ``_cli_*`` module, so the CLI
stays a list of imports. Bad user input never produces a traceback: every
:class:`~flextier.errors.UserInputError` and every usage error becomes one line on
stderr and exit code 2, before anything is sent or charged.
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional

import click
import typer

from .policy.errors import UserInputError

app = typer.Typer(
    name="flextier",
    help="Run LLM API work on the flex tier at half price, without missing deadlines or losing work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Modules that add commands with `register(app)`. Missing ones are skipped so each
# area can land on its own.
_COMMAND_MODULES = (
    "flextier._cli_catalog",    # estimate, models, advise
    "flextier._cli_emulate",    # emulate
    "flextier._cli_run",        # run, resume, status, report
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
    except click.exceptions.NoArgsIsHelpError as exc:  # type: ignore[attr-defined]
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        msg = exc.format_message().replace("\n", " ")
        typer.echo(f"flextier: error: {msg}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        typer.echo("flextier: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("flextier: interrupted", err=True)
        return 130


if __name__ == "__main__":  # python -m flextier.cli
    sys.exit(main())
