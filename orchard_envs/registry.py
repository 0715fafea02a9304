"""Name -> "module:attr" registries: a lookup imports only what it returns (backends, agents, harnesses)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from orchard_envs.errors import ConfigError, unknown_name


def construct(kind: str, registry: dict[str, str], name: str, **options: Any) -> Any:
    """Import and construct the registered `name`; an unknown name lists what exists."""
    return check_options(kind, registry, name, **options)(**options)


def check_options(kind: str, registry: dict[str, str], name: str, **options: Any) -> Any:
    """The registered `name`'s factory, once `options` fit its signature: a wrong name or option is
    refused before anything is built (an env checks its backend at construction, not at first use)."""
    if name not in registry:
        raise unknown_name(kind, name, registry)
    module, _, attr = registry[name].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as exc:
        accepted = ", ".join(p for p in signature.parameters if p not in ("self", "args", "kwargs")) or "none"
        raise ConfigError(f"{kind} {name!r}: {exc}; its options are: {accepted}") from None
    return factory
