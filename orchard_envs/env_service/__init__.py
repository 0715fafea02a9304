"""The env service: Orchard Env's REST API over our sandboxes, its clients and its CLI.

Imports are lazy, so `from orchard_envs.env_service import EnvClient` loads neither FastAPI nor uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchard_envs.env_service.app import create_app
    from orchard_envs.env_service.client import AsyncEnvClient, EnvClient
    from orchard_envs.env_service.state import ServiceSettings

__all__ = ["AsyncEnvClient", "EnvClient", "ServiceSettings", "create_app"]

_WHERE = {
    "AsyncEnvClient": "orchard_envs.env_service.client",
    "EnvClient": "orchard_envs.env_service.client",
    "ServiceSettings": "orchard_envs.env_service.state",
    "create_app": "orchard_envs.env_service.app",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
