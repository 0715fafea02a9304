"""Checks `orchard-bench run` makes before it creates anything in `--out`.

A run refused by its own validation must leave nothing behind: a `results.db` written before the env
rejected an option would make the corrected rerun "a different run". So the output folder, the env's
options (names, types, the env's own checks) and the sandbox backend are all checked first, each mistake
as one ConfigError line that says what to do.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any

from orchard_envs.cli_support import check_writable_folder
from orchard_envs.errors import ConfigError, OrchardError, unknown_name

EXAMPLE = {"max_steps": "max_steps=30"}  # what a hint shows for a well-known option


def check_run(out: Path, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Everything about a run that can be checked without running it; raises ConfigError."""
    check_writable_folder(out, "--out")
    check_backend(env_kwargs.get("backend"))
    check_env_options(env_id, env_kwargs)
    check_env_builds(env_id, env_kwargs)


def env_class(env_id: str) -> Any:
    """The class behind a registered env id (its entry point), imported but not constructed."""
    import gymnasium as gym

    entry = gym.spec(env_id).entry_point
    if not isinstance(entry, str):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def check_backend(backend: Any) -> None:
    """A backend name the sandbox layer knows (`--backend dockr` is refused with the close match)."""
    if backend is None or not isinstance(backend, str):
        return
    from orchard_envs.sandbox import BACKENDS

    if backend not in BACKENDS:
        raise unknown_name("sandbox backend (--backend)", backend, BACKENDS)


def check_env_options(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Every option is a parameter of the env's constructor and has its declared type."""
    cls = env_class(env_id)
    signature = inspect.signature(cls.__init__)
    params = {n: p for n, p in signature.parameters.items() if n != "self"}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation this interpreter cannot resolve: leave the types to the env
        hints = {}
    for key, value in env_kwargs.items():
        if key not in params and not takes_any:
            raise ConfigError(_unknown_option(env_id, key, named))
        if key in hints and (problem := _type_problem(hints[key], value)):
            example = EXAMPLE.get(key, f"{key}=VALUE")
            raise ConfigError(f"--env-option {key}={value!r}: {problem} (e.g. --env-option {example})")


def _unknown_option(env_id: str, key: str, named: list[str]) -> str:
    if key == "backend":
        return f"--backend: {env_id} runs no sandbox, so it takes no backend; leave --backend out"
    close = difflib.get_close_matches(key, named, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown --env-option {key!r} for {env_id}{hint}; its options: {', '.join(named)}"


def _type_problem(annotation: Any, value: Any) -> str | None:
    """Why `value` does not fit `annotation` (pydantic's words), or None; unknown types pass."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # a type pydantic cannot describe: the env checks it itself
        return None
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        return exc.errors()[0]["msg"].removeprefix("Value error, ").lower()
    return None


def check_env_builds(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Construct the env once and close it: the env's own checks (a value out of range, a suite with no
    runnable task) run here, before the run exists. Envs start sandboxes and services on reset, not here."""
    import gymnasium as gym

    try:
        env = gym.make(env_id, **env_kwargs)
    except OrchardError as exc:
        raise ConfigError(f"{env_id}: {_first_line(exc)}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{env_id} refused its options: {_first_line(exc)}") from exc
    env.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(" was raised from the environment creator")[0]  # gymnasium appends the kwargs
    return text.splitlines()[0] if text else type(exc).__name__
