"""What Orchard's command lines share: a Typer app that never prints tracebacks, and one-line errors."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer


def typer_app(name: str, help: str) -> typer.Typer:
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: no traceback for mistakes a user can fix."""
    typer.echo(f"{program}: error: {message}", err=True)
    raise typer.Exit(code)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` flags into constructor options; values are JSON where they parse (`8`, `true`, `0.7`),
    else text. Raises ValueError with the offending pair."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {pair!r} is not key=value (e.g. max_new_tokens=64)")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def agent_from_flags(program: str, name: str, flags: list[str]) -> Any:
    """The agent named on a command line with its `--option key=value` flags; mistakes exit with one line."""
    try:
        options = parse_options(flags)
    except ValueError as exc:
        fail(program, str(exc))
    return build_agent(program, name, options)


def build_agent(program: str, name: str, options: dict[str, Any]) -> Any:
    """A registered agent for a command line: an unknown name or option exits with one line."""
    from orchard_envs.agents import get_agent
    from orchard_envs.errors import OrchardError

    try:
        return get_agent(name, **options)
    except OrchardError as exc:
        fail(program, str(exc))
