"""What Orchard's command lines share: a Typer app that never prints tracebacks, and one-line errors."""

from __future__ import annotations

from typing import NoReturn

import typer


def typer_app(name: str, help: str) -> typer.Typer:
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: no traceback for mistakes a user can fix."""
    typer.echo(f"{program}: error: {message}", err=True)
    raise typer.Exit(code)
