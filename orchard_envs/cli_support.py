"""What Orchard's command lines share: a Typer app that never prints tracebacks, and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import typer


def typer_app(name: str, help: str) -> typer.Typer:
    """A Typer app that shows help when run bare and lets errors reach `fail` instead of a traceback."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: no traceback for mistakes a user can fix."""
    typer.echo(f"{program}: error: {message}", err=True)
    raise typer.Exit(code)


def check_writable_folder(path: Path, flag: str) -> None:
    """`path` is a folder this process can create or write into; else a ConfigError saying which.

    Checked before a command creates anything, so a read-only or mistyped output fails in one line at the
    start, not with a traceback after minutes of work."""
    from orchard_envs.errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; pass a new or empty folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write into" if existing == path else f"create it: {existing} is not writable"
        raise ConfigError(
            f"{flag} {path}: cannot {what} (read-only or not yours); pass a folder you can write"
        )


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
