"""Name -> "module:attr" registries: a lookup imports only what it returns (backends, agents, harnesses)."""

from __future__ import annotations

import importlib
from typing import Any

from orchard_envs.errors import unknown_name


def construct(kind: str, registry: dict[str, str], name: str, **options: Any) -> Any:
    """Import and construct the registered `name`; an unknown name lists what exists."""
    if name not in registry:
        raise unknown_name(kind, name, registry)
    module, _, attr = registry[name].partition(":")
    return getattr(importlib.import_module(module), attr)(**options)
