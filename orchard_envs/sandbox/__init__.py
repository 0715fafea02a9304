"""Sandboxes: one interface (`Sandbox`), several backends chosen by name."""

from __future__ import annotations

from typing import Any

from orchard_envs.registry import construct
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot
from orchard_envs.sandbox.pool import SandboxPool
from orchard_envs.sandbox.spec import ExecResult, FileInfo, SandboxSpec

__all__ = [
    "BACKENDS", "Backend", "ExecResult", "FileInfo", "Sandbox", "SandboxPool", "SandboxSpec", "Snapshot",
    "get_backend",
]

# String entry points: importing this module loads no backend (and so neither docker nor httpx).
BACKENDS: dict[str, str] = {
    "local": "orchard_envs.sandbox.local:LocalBackend",
    "docker": "orchard_envs.sandbox.docker_backend:DockerBackend",
    "remote": "orchard_envs.sandbox.remote:RemoteBackend",
}


def get_backend(name: str, **options: Any) -> Backend:
    """Construct a backend by name ('local', 'docker', 'remote')."""
    return construct("sandbox backend", BACKENDS, name, **options)
